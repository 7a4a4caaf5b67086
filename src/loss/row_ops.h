// The fused objective's per-constraint row operations (private to the loss module).
//
// fused_objective.cpp walks the hidden rows in chunks and does what every constraint
// shares: the chunk's logits, CE's softmax pass and one-hot, soft-capping, the GEMMs back
// through the lm_head. What a constraint adds to a chunk comes from its ConstraintRowOps,
// one table per kind (rows_<kind>.cpp), found by row_ops_of: an exhaustive switch, so a
// kind without a table does not compile cleanly (-Wswitch) and throws if reached. Each
// table has:
//   check           its per-batch inputs (ConstraintInputs) against the spec
//   prepare         step 1: what it needs from the chunk's logits before they become the
//                   gradient (its rows' logits on S, reference rows, ...)
//   torch_terms     step 2 with torch ops, after CE's exp pass: a dense part added to CE's
//                   per-row coefficient on softmax(z), a sparse [n, K] part on S
//   dispatch_terms  step 2 through cuda/loss_dispatch.h (the CUDA kernels on bf16 logits)
//   unfused         the same constraint as a plain torch composition (autograd)
//   terms           its metric terms (descriptor's metric_terms order) from the sums
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "safetune/cuda/loss_dispatch.h"
#include "safetune/loss/fused_objective.h"

namespace safetune::loss::rows {

// cap * tanh(z / cap), the final-logit soft-capping; z itself when cap is 0.
at::Tensor capped(const at::Tensor& z, double cap);

// The reference's fp32 logits at constraint rows `ci` (indices into M), from its hidden
// states (soft-capped as the model's would be) or its logits.
at::Tensor reference_rows(const ConstraintInputs& c, const at::Tensor& ci, double cap);

// x [n, V] fp32 becomes exp(x - rowmax) in place; returns the row sums of that and the
// rows' logsumexp, both [n, 1], without an [n, V] temporary. With `rest_of` [K] columns,
// also the row sums outside them, summed on their own (1 - p_S by subtraction would lose
// p_R's digits when p_S is close to 1), in the one sum the softmax needs anyway.
struct RowExp {
  at::Tensor max, sum, lse;  // lse = max + log(sum)
  at::Tensor rest;           // with rest_of: [n, 1]
};
RowExp exp_rows_(const at::Tensor& x, const at::Tensor& rest_of = {});

// The constraint's valid rows inside one chunk: idx (indices into M), local (rows in the
// chunk) and, when consecutive (the usual case), first = the first local row, so that
// their rows of a [C, ...] tensor are a view instead of a copy.
struct ChunkRows {
  int64_t n = 0, first = -1;
  at::Tensor idx, local;
  at::Tensor of(const at::Tensor& x) const { return first >= 0 ? x.narrow(0, first, n) : x.index_select(0, local); }
};

// What the whole op works from, set once before the chunks (fused_objective.cpp).
struct Plan {
  ConstraintKind kind = ConstraintKind::none;
  at::Tensor tg, ce_valid;         // [N] targets (int64) and whether each has one
  std::vector<int64_t> ce_prefix;  // ce_prefix[i] = targets among rows < i
  std::vector<int64_t> cidx, crow;  // the constraint's valid rows: index into M, hidden row
  at::Tensor cidx_t, crow_t;
  at::Tensor S, w, tt;  // [K] columns, [K] token weights, [M] the gate's t
  int64_t K = 0, n_ce = 0, n_con = 0;
  double T = 1, lambda = 0;
  double softcap = 0;
  // con_sum adds up the row losses; the constraint is con_sum * con_scale and its
  // gradient for the logits lambda * con_scale * d(row loss)/dz = grad_scale * ...
  double ce_scale = 0, con_scale = 0, grad_scale = 0;
};

// The sums over the chunks (fp64 scalars on the device).
struct Sums {
  at::Tensor ce, con, gate;
  at::Tensor mass;  // safety_mass: its mass terms KLbin(a_S || p_S), without T^2
};

// Step 1's results for one chunk: what a constraint keeps from the logits.
struct ChunkConstraint {
  ChunkRows rows;
  at::Tensor zS;         // [n, K] fp32: the model's logits on S
  at::Tensor z_ref;      // pact: [n, K] the gate's mix of the references on S
  at::Tensor lr_S;       // anchor: [n, K] the reference's log-probabilities on S
  at::Tensor a, a_rest;  // safety_mass: the reference's buckets, [n, K] and [n, 1] fp64
  at::Tensor g_rows;     // [n, V] a gradient for the rows, added after step 2 (kl_full; safety_mass at T != 1)
  at::Tensor g_cols;     // [n, K] a gradient on S computed in step 1 (safety_mass at T != 1)
};

// The plain composition's inputs: `logits` [N, V] are the model's (soft-capped) logits
// when the kind's unfused_full_logits says so, else undefined.
struct UnfusedArgs {
  const at::Tensor& hidden;
  const at::Tensor& weight;
  const at::Tensor& logits;
  const at::Tensor& rows;   // [M] on the device
  const at::Tensor& valid;  // [M] bool on the device
  const ObjectiveSpec& spec;
  const ConstraintInputs& in;
};

struct ConstraintRowOps {
  void (*check)(const ObjectiveSpec& s, const ConstraintInputs& c, int64_t M, int64_t V);
  // The mean is also over S's columns (anchor).
  bool mean_over_columns = false;
  // The plain composition reads the model's [N, V] logits (else only its logits on S).
  bool unfused_full_logits = false;
  void (*prepare)(const Plan& p, const ObjectiveSpec& s, const ConstraintInputs& c, const at::Tensor& z,
                  ChunkConstraint& k, Sums& sums);
  // CE's exp pass should also sum each row outside S (RowExp::rest).
  bool (*wants_rest)(const Plan& p);
  // Adds the dense part to coef [C, 1] (on softmax(z)); returns the sparse [n, K] part on
  // S, undefined for none. e: CE's exp pass over the chunk (z holds exp(z - max)).
  at::Tensor (*torch_terms)(const Plan& p, const ChunkConstraint& k, const RowExp& e, at::Tensor& coef, Sums& sums);
  // Before CE's gradient is written: con.grad [C, K] / con.row_coef [C] (either may stay
  // undefined), and lse [C] when it computed the rows' logsumexp.
  void (*dispatch_terms)(const Plan& p, const ChunkConstraint& k, const at::Tensor& z, const at::Tensor& tgt,
                         int64_t ignore_index, cuda::SubsetTermResult& con, at::Tensor& lse, Sums& sums);
  // Sets v.constraint (differentiable), v.gate_mean and v.terms.
  void (*unfused)(const UnfusedArgs& a, ObjectiveValues& v);
  // The metric terms of the fused op, in the descriptor's order, from the sums.
  std::vector<at::Tensor> (*terms)(const Plan& p, const Sums& sums);
};

// The table of `kind`; throws for a value outside the enum.
const ConstraintRowOps& row_ops_of(ConstraintKind kind);

// The tables, one per kind (rows_<kind>.cpp).
const ConstraintRowOps& none_row_ops();
const ConstraintRowOps& pact_row_ops();
const ConstraintRowOps& kl_full_row_ops();
const ConstraintRowOps& anchor_row_ops();
const ConstraintRowOps& safety_mass_row_ops();

// Helpers the tables share.
// A [C] bool mask of the chunk's constraint rows, and x [n, ...] spread over all C rows.
at::Tensor chunk_mask(const ChunkConstraint& k, int64_t C, const at::Tensor& like);
at::Tensor all_rows(const ChunkConstraint& k, int64_t C, const at::Tensor& x);
// The gate's mean over the valid rows (what pact and safety_mass log as "gate").
at::Tensor gate_mean(const Plan& p, const Sums& sums);
// A row op that does nothing (kinds without that step).
void no_dispatch_terms(const Plan&, const ChunkConstraint&, const at::Tensor&, const at::Tensor&, int64_t,
                       cuda::SubsetTermResult&, at::Tensor&, Sums&);
bool no_rest(const Plan&);
std::vector<at::Tensor> no_terms(const Plan&, const Sums&);
// The model's logits on S at the constraint's rows, [M, K], soft-capped (autograd).
at::Tensor logits_on_S(const UnfusedArgs& a);
// kl_full and anchor: the reference over the whole vocabulary, as hidden states + lm_head
// or as logits; checked, and for the plain composition made into [M, V] fp32 logits.
void check_whole_vocab_reference(const ConstraintInputs& c, int64_t M, int64_t V, const char* kind);
at::Tensor unfused_reference_logits(const UnfusedArgs& a);

}  // namespace safetune::loss::rows
