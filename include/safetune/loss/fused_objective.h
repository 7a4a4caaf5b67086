// The whole training objective, CE + lambda x constraint, straight from final hidden
// states, without ever holding the [tokens x vocab] logits.
//
// fused_objective walks the hidden rows in chunks. For each chunk it computes the chunk's
// logits once, then from them: the cross-entropy of the rows with a target, the
// constraint of the rows the constraint applies to, and the gradient of
// ce + lambda x constraint with respect to those logits, written over the logits in place
// (softmax minus one-hot for CE; the constraint's analytic gradient added on top). Two
// GEMMs turn it into the chunk's gradient for the hidden states (and, when the lm_head
// weight trains, its contribution to the weight's gradient); then the chunk is dropped.
// Backward only scales the stored gradients by the incoming one. Peak memory is one
// [chunk x vocab] buffer, the logits (anchor adds the reference's chunk, kl_full two), instead of
// several [tokens x vocab] ones.
//
// The per-row arithmetic of a chunk (the softmax, the CE and constraint gradients written
// into the logits) runs as the CUDA kernels of cuda/loss_kernels.h when LibTorch has CUDA
// and the logits are bf16 on the GPU (they stay bf16 then; the kernels accumulate in fp32),
// and as torch ops on fp32 logits otherwise (RowOps).
//
// Semantics are exactly those of constraints.h (pact with its gate, kl_full, anchor) and
// of the mean cross-entropy over targets != ignore_index; unfused_objective is the same
// objective as a plain composition of those torch ops (autograd), for checking.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "safetune/loss/constraints.h"
#include "safetune/loss/cross_entropy.h"

namespace safetune::loss {

// A run's objective, fixed for the whole run: total = ce + lambda x the constraint `kind`
// with its options, on the safety-token columns S with pact's weights w.
struct ObjectiveSpec {
  ConstraintKind kind = ConstraintKind::none;
  double lambda = 1.0;
  ConstraintOptions options;  // temperature; pact's reference_mix and gate; positions
  at::Tensor S;               // [K] int64 safety-token columns (pact, anchor, positions = probe)
  at::Tensor w;               // [K] fp32 weights max(v, 0) (pact)
  // The model's final-logit soft-capping (Gemma 2): logits = cap * tanh((h W^T) / cap)
  // for the policy and for a reference given as hidden states (the same family); 0: none.
  double logit_softcap = 0;
};

// One batch's inputs of the constraint. It applies to a row set of its own (the response
// positions), given as indices into the hidden rows; CE applies to the rows whose target
// is not ignore_index. The hidden rows are normally the union of the two.
struct ConstraintInputs {
  at::Tensor rows;   // [M] int64, strictly increasing indices into the hidden rows
  at::Tensor valid;  // [M] bool: the rows constrained (after select_positions)
  at::Tensor t;      // [M] int64 response index (pact's gate)
  at::Tensor z_full;  // [M, K] reference logits on S, full context (pact)
  at::Tensor z_post;  // [M, K] post-only context (pact; undefined for reference_mix full)
  // safety_mass: the reference's log-sum-exp over the whole vocabulary of its logits / T,
  // full context and post-only context (the latter only for reference_mix gated / post).
  at::Tensor lse_full;  // [M]
  at::Tensor lse_post;  // [M]

  // kl_full and anchor need the full-context reference over the whole vocabulary. Either
  // its final hidden states at the rows and its lm_head weight, from which the op computes
  // reference logit chunks on the fly, or its logits. The first is what saves memory:
  // [M, d] (plus a weight the reference holds anyway) instead of [M, V], e.g. 32x less at
  // d = 1024, V = 32000; the GEMM it costs is the one the reference would otherwise run
  // to produce the logits. ref_logits is used when ref_hidden is undefined.
  at::Tensor ref_hidden;  // [M, d]
  at::Tensor ref_weight;  // [V, d]
  at::Tensor ref_logits;  // [M, V]
};

// How a chunk's row terms are computed:
//   torch      torch ops on fp32 logits, in place (the CPU path; also CUDA in fp32)
//   dispatch   the entry points of cuda/loss_dispatch.h on the logits as the GEMM gives
//              them: the CUDA kernels on bf16 CUDA logits, else their fp32 torch-op
//              fallbacks (slower and with [chunk x vocab] temporaries: for checking the
//              kernels' composition on a machine without a GPU)
//   automatic  dispatch exactly when the kernels apply to the logits (cuda::kernels_apply)
enum class RowOps { automatic, torch, dispatch };

struct FusedObjectiveOptions {
  int64_t chunk_tokens = 0;  // hidden rows per chunk; 0: default_chunk_tokens
  int64_t ignore_index = kIgnoreIndex;
  RowOps row_ops = RowOps::automatic;
};

// A chunk whose fp32 logits take at most about 64 MiB on the CPU (40 MiB when the
// lm_head weight trains: its gradient is held too) and 512 MiB on a GPU, in rows a
// multiple of 64 when that is at least 64 (at least 16 rows, at most 4096): on the CPU
// 512 at V = 32000, 320 with a trained weight.
int64_t default_chunk_tokens(int64_t vocab, bool weight_trains = false, bool gpu = false);

struct ObjectiveValues {
  at::Tensor total;       // scalar ce + lambda * constraint: what backward() is called on
  at::Tensor ce;          // scalar mean CE over the rows with a target
  at::Tensor constraint;  // scalar constraint term (0 for none or no valid row)
  at::Tensor gate_mean;   // pact: mean gate value c_t over the valid rows (else 0); no gradient
  // The constraint's metric terms, detached, in the order of its descriptor's
  // metric_terms (constraint_choices.h): e.g. safety_mass's gate, mass and shape terms.
  std::vector<at::Tensor> terms;
};

// hidden [N, d] (its gradient is computed when it requires grad), weight [V, d] (gradient
// computed only when it requires grad: frozen under LoRA), targets [N] int64.
// In the result only `total` carries a gradient; ce, constraint and gate_mean are
// detached values (for metrics).
// `in` is read only when spec.kind is not none.
ObjectiveValues fused_objective(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                const ObjectiveSpec& spec, const ConstraintInputs& in,
                                const FusedObjectiveOptions& options = {});

// The same objective composed of torch ops on full logits (linear_cross_entropy,
// pact_loss, kl_full_loss, anchor_loss), differentiated by autograd. Every output but
// gate_mean carries a gradient.
ObjectiveValues unfused_objective(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                  const ObjectiveSpec& spec, const ConstraintInputs& in,
                                  int64_t ignore_index = kIgnoreIndex);

}  // namespace safetune::loss
