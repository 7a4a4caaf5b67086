// Where a safety constraint's frozen reference comes from (objective.reference):
//
//  copy         a second Transformer loaded from model.path, frozen, in eval mode (what
//               the reference implementation does: twice the weights in memory);
//  adapter_off  LoRA only: the policy itself with every adapter disabled, run under
//               NoGradGuard in eval mode (no adapter dropout), then re-enabled. With B A
//               removed the function is exactly the base model's, with no second copy;
//  cache        logits precomputed by `safetune ref-cache` (ref_cache.h), looked up by
//               example index, so shuffling and resuming need nothing special;
//  auto         adapter_off with LoRA, copy otherwise.
//
// A reference answers one question per micro-batch: its logits at the batch's response
// positions (loss::response_positions order), on the safety-token columns S, from the full
// context and (when asked) from the post-only context, with (when asked: safety_mass) each
// position's log-sum-exp over the whole vocabulary, which a live reference computes in
// row chunks of its lm_head and a cache stores; full-vocabulary logits only when
// the unfused objective needs them (kl_full, anchor); the fused one takes the final hidden
// states and the lm_head weight instead, from which it computes logits chunk by chunk.
#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "safetune/loss/constraints.h"
#include "safetune/train/config.h"

namespace safetune::data {
struct Batch;
}
namespace safetune::model {
class Transformer;
}

namespace safetune::train {

struct ReferenceRequest {
  bool post = false;        // z_post (pact with reference_mix gated or post)
  bool full_vocab = false;  // logits over the whole vocabulary, full context
  bool hidden = false;      // final hidden states (full context) + lm_head weight instead:
                            // what the fused objective needs for kl_full and anchor
  bool mass = false;        // softmax mass on S per position (positions = probe)
  // Each position's log-sum-exp over the whole vocabulary of logits / lse_temperature
  // (full context; the post-only context's too when `post`): safety_mass's absolute
  // probabilities on S from its S logits.
  bool lse = false;
  double lse_temperature = 1.0;
};

struct ReferenceLogits {
  at::Tensor z_full;  // [N, K] fp32, columns S, full context
  at::Tensor z_post;  // [N, K] fp32, post-only context (undefined unless requested)
  at::Tensor logits;  // [N, V] full context (undefined unless requested)
  at::Tensor mass;    // [N] fp32 (undefined unless requested)
  at::Tensor hidden;  // [N, d] full-context final hidden states (undefined unless requested)
  at::Tensor weight;  // [V, d] the reference's lm_head weight (with `hidden`)
  at::Tensor lse_full;  // [N] fp64 (undefined unless requested)
  at::Tensor lse_post;  // [N] fp64 (undefined unless requested with post)
};

class Reference {
 public:
  virtual ~Reference() = default;
  virtual ReferenceLogits compute(const data::Batch& batch, const loss::ResponsePositions& P,
                                  const ReferenceRequest& req) = 0;
  virtual std::string name() const = 0;
};

// Runs a frozen model (eval mode, no gradients) over a batch's full and post-only contexts
// and returns the logits at the response positions. `S` [K] int64 columns.
ReferenceLogits reference_pass(model::Transformer& model, const data::Batch& batch, const loss::ResponsePositions& P,
                               const at::Tensor& S, const ReferenceRequest& req);

// The reference of `cfg.objective.reference` for `policy` (a validated config: adapter_off
// has LoRA, a cache serves neither kl_full nor anchor). `S` is kept for the passes.
// InputError for a missing or stale cache.
std::unique_ptr<Reference> make_reference(const RunConfig& cfg, model::Transformer& policy, const at::Tensor& S);

// A reference that serves precomputed rows from memory: row block `offsets[e] ..
// offsets[e+1]` of z_full / z_post / mass belongs to example e (response positions in
// order). Used for reference = cache (loaded from the file) and by `bench step`.
// lse_full / lse_post: the same rows' log-sum-exps (undefined: the cache holds none).
std::unique_ptr<Reference> memory_reference(at::Tensor offsets, at::Tensor z_full, at::Tensor z_post, at::Tensor mass,
                                            std::string where, at::Tensor lse_full = {}, at::Tensor lse_post = {});

// The request a constraint config makes of its reference.
ReferenceRequest reference_request(const ObjectiveConfig& cfg, const loss::ConstraintOptions& o);

}  // namespace safetune::train
