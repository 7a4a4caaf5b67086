// Objective: cross-entropy on the response tokens, plus lambda x a safety constraint
// against a frozen reference (reference.h). objective.fused (default) computes both in one
// chunked pass over the hidden states; otherwise they are composed of separate ops.
#include "safetune/train/objective.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "safetune/core/error.h"
#include "safetune/loss/constraints.h"
#include "safetune/loss/cross_entropy.h"
#include "safetune/loss/fused_objective.h"
#include "safetune/train/reference.h"

namespace safetune::train {

void check_objective(const ObjectiveConfig& cfg) {
  if (cfg.constraint != "none" && cfg.constraint != "pact" && cfg.constraint != "kl_full" && cfg.constraint != "anchor")
    input_error("objective.constraint", "unknown constraint '" + cfg.constraint + "' (none, pact, kl_full, anchor)");
  if (cfg.reference == "cache" && (cfg.constraint == "kl_full" || cfg.constraint == "anchor"))
    input_error("objective.reference", "objective.constraint = " + cfg.constraint +
                                           " needs the reference's logits over the whole vocabulary, which a "
                                           "reference cache does not hold; use adapter_off or copy");
}

at::Tensor shift_labels(const at::Tensor& labels) {
  // HF convention: labels are aligned with input_ids and the loss shifts them. Shifting the
  // labels (rather than slicing the hidden states) keeps the hidden states contiguous.
  const int64_t T = labels.size(1);
  at::Tensor out = at::full_like(labels, loss::kIgnoreIndex);
  if (T > 1) out.narrow(1, 0, T - 1).copy_(labels.narrow(1, 1, T - 1));
  return out;
}

int64_t trained_tokens(const data::Batch& batch) {
  const int64_t T = batch.labels.size(1);
  if (T < 2) return 0;
  return batch.labels.narrow(1, 1, T - 1).ne(loss::kIgnoreIndex).sum().item<int64_t>();
}

LossTerms compute_objective(const ObjectiveConfig& cfg, model::Transformer& model, const data::Batch& batch,
                            Constraint* constraint) {
  if (cfg.constraint != "none" && !constraint)
    input_error("objective.constraint", cfg.constraint + " needs its reference and safety tokens (setup_constraint)");
  // The reference first: it runs without gradients (and, for adapter_off, on the same
  // module with its adapters off), so nothing of it is alive during the policy's backward.
  loss::ResponsePositions P;
  ReferenceLogits ref;
  if (constraint && cfg.constraint != "none") {
    P = loss::response_positions(batch);
    ref = constraint->reference->compute(batch, P, constraint->request);
  }
  const bool constrained = constraint && cfg.constraint != "none";
  at::Tensor hidden = model.forward(batch.input_ids, batch.attention_mask);  // [B,T,d]
  const int64_t T = hidden.size(1);
  at::Tensor h = hidden.reshape({-1, hidden.size(-1)});
  at::Tensor t = shift_labels(batch.labels).reshape({-1});
  // The constraint applies at the response positions P, as rows of h. kl_full and anchor
  // take the reference's hidden states and lm_head weight (fused) or its logits.
  loss::FusedConstraint fc;
  at::Tensor flat_p;
  if (constrained) {
    const loss::ConstraintOptions& o = constraint->options;
    flat_p = P.rows.mul(T).add(P.cols).to(at::kCPU, at::kLong);
    fc.kind = cfg.constraint;
    fc.lambda = cfg.lambda;
    fc.options = o;
    fc.rows = flat_p;
    fc.valid = loss::select_positions(o, P.t, at::ones({P.t.numel()}, at::kBool), ref.mass);
    fc.S = constraint->S;
    fc.w = constraint->w;
    fc.t = P.t;
    fc.z_full = ref.z_full;
    fc.z_post = ref.z_post;
    fc.ref_hidden = ref.hidden;
    fc.ref_weight = ref.weight;
    fc.ref_logits = ref.logits;
  }
  loss::ObjectiveValues v;
  if (cfg.fused) {
    // Only the rows that count go through the op: the trained positions (CE) and the
    // response positions (the constraint), usually the same set. Prompt and padding rows
    // would cost a [rows x vocab] GEMM forward and two backward for nothing.
    at::Tensor keep = t.to(at::kCPU).ne(loss::kIgnoreIndex);
    if (constrained) keep.index_fill_(0, flat_p, true);
    const at::Tensor kept = keep.nonzero().squeeze(1);  // increasing
    if (kept.numel() < t.numel()) {
      h = h.index_select(0, kept.to(h.device()));
      t = t.index_select(0, kept.to(t.device()));
      // Each response position's row among the kept ones: its rank.
      if (constrained) fc.rows = keep.to(at::kLong).cumsum(0).sub_(1).index_select(0, flat_p);
    }
    v = loss::fused_objective(h, model.lm_head_weight(), t, fc);
  } else {
    // The plain composition over every position, with the plain row mapping: what the
    // fused path (and its row selection) is checked against.
    v = loss::unfused_objective(h, model.lm_head_weight(), t, fc);
  }
  LossTerms out;
  out.total = v.total;
  out.terms.emplace_back("ce", v.ce);
  if (!constrained) return out;
  out.terms.emplace_back(cfg.constraint, v.constraint);
  if (cfg.constraint == "pact") out.terms.emplace_back("gate", v.gate_mean);
  return out;
}

}  // namespace safetune::train
