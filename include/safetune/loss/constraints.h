// Safety constraints added to the fine-tuning loss (loss = CE + lambda * constraint):
//
//  pact     PACT's step 2: a KL on the safety-token columns S only, towards a reference
//           that mixes the frozen aligned model's logits on the full context (z_full) and
//           on a post-only context (assistant header + response prefix, z_post), the mix
//           chosen per position by a top-p "spread" gate with prefix emphasis:
//             k_p(z)  = smallest count of tokens whose sorted cumulative probability
//                       reaches top_p, on softmax(z[S] / T_g); I = k_p / |S|
//             c_t     = sigmoid(alpha * (I_theta,t - I_post,t - b))
//                       * exp(-max(t - N, 0) / tau_d)
//             z_mix,t = (1 - c_t) z_full,t + c_t z_post,t                 (no gradient)
//             q_t(j)  = softmax(z_mix,t / T)_j * w_j, renormalised over S, w = max(v, 0)
//             L       = T^2 * mean over valid positions of
//                       sum_j q_t(j) (log q_t(j) - log softmax(z_theta,t / T)_j)
//           t counts response positions from 0 (the position predicting the first
//           response token). The gate carries no gradient (it is computed from detached
//           z_theta); only log softmax(z_theta / T) is differentiated.
//  kl_full  forward KL(p_ref || p_theta) over the whole vocabulary at every selected
//           response position, at temperature T and scaled by T^2 like pact (T = 1 gives
//           the plain KL): the model-wide baseline.
//  anchor   mean over selected positions and over j in S of
//           (log p_theta(j) - log p_ref(j))^2, where log p = log_softmax over the WHOLE
//           vocabulary at temperature 1, then restricted to S (so moving probability mass
//           between S and the rest of the vocabulary is penalised too).
//  safety_mass  the KL over |S|+1 categories at each response position: each safety
//           token's absolute probability under the whole-vocabulary softmax at
//           temperature T, plus the rest of the vocabulary as one bucket:
//             p = softmax(z_theta / T), a = softmax(z_ref / T) (over the vocabulary V),
//             p_R = 1 - sum_{j in S} p_j, a_R likewise,
//             L = T^2 * sum over valid rows of
//                 [sum_{j in S} a_j log(a_j / p_j) + a_R log(a_R / p_R)] / (all rows)
//           with dL/dz_i = T (p_i - a_i) on S and T p_i (1 - a_R / p_R) off S. Zero with
//           zero gradient at model == reference; moving mass from S to the rest is seen.
//           The reference comes as its logits on S plus its log-sum-exp over V (at T), so
//           a cache can serve it; reference_mix / the gate mix the |S|+1 probabilities,
//           a = (1 - c) a_full + c a_post (exact). p_R and a_R are floored at kRestFloor
//           inside the logarithm and the ratio a_R / p_R, so a vanishing rest gives no NaN.
//           Split into a mass term KLbin(a_S || p_S) and a shape term
//           a_S KL(a|S || p|S), which add up to L / T^2 (metrics).
//
// The reference for kl_full and anchor is the full-context one. These are the plain
// compositions of torch ops (autograd provides the gradients); inputs may be any float
// dtype and are computed in fp32 (the gate's spread in fp64).
//
// Which response positions are constrained: all (default), the first N (t < N), or
// "probe" positions, where the full-context reference puts at least probe_tau of its
// probability on S (computed over the whole vocabulary at temperature 1).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "safetune/loss/constraint_choices.h"
#include "safetune/loss/gate_options.h"

namespace safetune::data {
struct Batch;
}

namespace safetune::loss {

// The constraint's settings: the loss module's own struct (the trainer fills it from the
// run config, objective.*; the config validates every value and range).
struct ConstraintOptions {
  double temperature = 2.0;  // T of the KL, with the T^2 factor

  ReferenceMix reference_mix = ReferenceMix::gated;  // where pact's reference comes from
  GateOptions gate;            // c_t of reference_mix gated (gate_options.h)
  bool prefix_decay = true;    // off: c_t without the exp(-max(t - N, 0) / tau_d) factor

  Positions positions = Positions::all;
  int64_t first_n = 8;
  double probe_tau = 0.5;  // probe: minimum reference probability mass on S
};

// The result of a constraint: the scalar loss (differentiable w.r.t. the model's logits)
// and, for pact, the mean gate value c_t over the constrained positions (detached; 0
// when nothing is constrained or reference_mix is full).
struct ConstraintResult {
  at::Tensor loss;
  at::Tensor gate_mean;
};

// I = k_p / |S| for each row of z [N, K] (fp64 [N], no gradient).
at::Tensor topp_spread(const at::Tensor& z, double top_p, double temperature);

// c_t [N] (fp32, no gradient) for the options' reference_mix: the gate from z_theta and
// z_post for gated, zeros for full, ones for post.
at::Tensor gate_values(const at::Tensor& z_theta, const at::Tensor& z_post, const at::Tensor& t,
                       const ConstraintOptions& o);

// PACT's L_KL. z_theta, z_full, z_post: [N, K] logits on S (z_post may be undefined when
// reference_mix is full); w: [K] weights max(v, 0); t: [N] int64 response index;
// valid: [N] bool, the positions to constrain (after position selection). Rows that are
// not valid may hold anything (they are dropped before any arithmetic).
ConstraintResult pact_loss(const at::Tensor& z_theta, const at::Tensor& z_full, const at::Tensor& z_post,
                           const at::Tensor& w, const at::Tensor& t, const at::Tensor& valid,
                           const ConstraintOptions& o);

// T^2 * mean over valid rows of sum_j q(j) (log q(j) - log softmax(z_theta / T)_j),
// q = softmax(z_ref / T) * w renormalised: pact with a fixed reference.
at::Tensor weighted_subset_kl(const at::Tensor& z_theta, const at::Tensor& z_ref, const at::Tensor& w,
                              const at::Tensor& valid, double temperature);

// kl_full: logits over the whole vocabulary [N, V].
at::Tensor kl_full_loss(const at::Tensor& logits_theta, const at::Tensor& logits_ref, const at::Tensor& valid,
                        double temperature);

// anchor: logits over the whole vocabulary [N, V]; S: [K] int64 column ids.
at::Tensor anchor_loss(const at::Tensor& logits_theta, const at::Tensor& logits_ref, const at::Tensor& S,
                       const at::Tensor& valid);

// The floor of the rest buckets p_R and a_R inside logarithms and ratios (safety_mass).
constexpr double kRestFloor = 1e-6;

// safety_mass's reference at each row: a [n, K] on S and a_rest [n] = 1 - sum(a), fp64,
// no gradient. z_full / z_post [n, K]: the reference's logits on S; lse_full / lse_post
// [n]: its log-sum-exp over the whole vocabulary of logits / T; c [n]: the gate, mixing
// the probabilities (undefined or 0: full context alone; z_post may then be undefined).
struct BucketReference {
  at::Tensor a, a_rest;
};
BucketReference bucket_reference(const at::Tensor& z_full, const at::Tensor& lse_full, const at::Tensor& z_post,
                                 const at::Tensor& lse_post, const at::Tensor& c, double temperature);

struct SafetyMassResult {
  at::Tensor loss;        // scalar, differentiable for logits_theta
  at::Tensor mass_term;   // scalar mean of KLbin(a_S || p_S) (detached, no T^2)
  at::Tensor shape_term;  // scalar mean of a_S KL(a|S || p|S) (detached, no T^2)
  at::Tensor gate_mean;   // mean gate over the valid rows (0 without rows or for full)
};

// safety_mass as a plain composition (autograd): logits_theta [N, V], S [K], z_full /
// z_post [N, K] and lse_full / lse_post [N] as for bucket_reference (the post ones only
// read for reference_mix gated or post), t [N] response index (the gate), valid [N].
// The mean is over all N rows.
SafetyMassResult safety_mass_loss(const at::Tensor& logits_theta, const at::Tensor& S, const at::Tensor& z_full,
                                  const at::Tensor& lse_full, const at::Tensor& z_post, const at::Tensor& lse_post,
                                  const at::Tensor& t, const at::Tensor& valid, const ConstraintOptions& o);

// Probability mass softmax(logits)[S] summed, per row: [N] fp32, no gradient.
at::Tensor mass_on_subset(const at::Tensor& logits, const at::Tensor& S);

// Which response positions to constrain: `valid` [N] bool restricted by o.positions
// (first_n: t < first_n; probe: ref_mass >= probe_tau, ref_mass from mass_on_subset of
// the full-context reference; safety_start: the ref_mass of the row's example at t = 0
// >= probe_tau, the example given by `example` [N], e.g. ResponsePositions::rows).
// ref_mass and example may be undefined for the modes that do not read them.
at::Tensor select_positions(const ConstraintOptions& o, const at::Tensor& t, const at::Tensor& valid,
                            const at::Tensor& ref_mass = {}, const at::Tensor& example = {});

// The response positions of a batch, flattened: the position of the full context whose
// logits predict response token t (rows/cols into [B, T]), the same prediction in the
// post-only context (post_cols into [B, P]), and t. Every response token of each row is
// listed (the end-of-turn tokens too), in row order.
struct ResponsePositions {
  at::Tensor rows, cols, post_cols, t;  // [N] int64 each
};
ResponsePositions response_positions(const data::Batch& batch);

}  // namespace safetune::loss
