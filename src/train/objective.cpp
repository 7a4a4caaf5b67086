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

namespace {

// fused = true: one chunked op computes CE and the constraint from the hidden states
// (loss/fused_objective.h). Its rows are the union of the trained positions (CE) and the
// response positions P (the constraint), usually the same set; FusedConstraint::rows maps
// P into them. kl_full and anchor take the reference's hidden states and lm_head weight
// instead of its [N, V] logits.
LossTerms fused_terms(const ObjectiveConfig& cfg, model::Transformer& model, const data::Batch& batch,
                      Constraint* constraint, const loss::ResponsePositions& P, const ReferenceLogits& ref) {
  const bool constrained = constraint && cfg.constraint != "none";
  at::Tensor hidden = model.forward(batch.input_ids, batch.attention_mask);  // [B,T,d]
  const int64_t T = hidden.size(1);
  at::Tensor h = hidden.reshape({-1, hidden.size(-1)});
  at::Tensor t = shift_labels(batch.labels).reshape({-1});
  // Row bookkeeping on the CPU: which flat positions [B*T] the op sees.
  at::Tensor keep = t.to(at::kCPU).ne(loss::kIgnoreIndex);
  at::Tensor flat_p;
  if (constrained) {
    flat_p = P.rows.mul(T).add(P.cols).to(at::kCPU, at::kLong);
    keep.index_fill_(0, flat_p, true);
  }
  const at::Tensor union_rows = keep.nonzero().squeeze(1);  // increasing
  loss::FusedConstraint fc;
  if (union_rows.numel() < t.numel()) {
    // Prompt and padding rows would cost a [rows x vocab] GEMM for nothing.
    h = h.index_select(0, union_rows.to(h.device()));
    t = t.index_select(0, union_rows.to(t.device()));
  }
  if (constrained) {
    const loss::ConstraintOptions& o = constraint->options;
    // Position of each flat index in the union: the rank among the kept ones.
    const at::Tensor rank = keep.to(at::kLong).cumsum(0).sub_(1);
    fc.kind = cfg.constraint;
    fc.lambda = cfg.lambda;
    fc.options = o;
    fc.rows = rank.index_select(0, flat_p);
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
  loss::ObjectiveValues v = loss::fused_objective(h, model.lm_head_weight(), t, fc);
  LossTerms out;
  out.total = v.total;
  out.terms.emplace_back("ce", v.ce);
  if (!constrained) return out;
  out.terms.emplace_back(cfg.constraint, v.constraint);
  if (cfg.constraint == "pact") out.terms.emplace_back("gate", v.gate_mean);
  return out;
}

}  // namespace

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
  if (cfg.fused) return fused_terms(cfg, model, batch, constraint, P, ref);
  // fused = false: the plain composition (CE over full logits, then the constraint on
  // full logits from the reference's full logits), kept for checking.
  at::Tensor hidden = model.forward(batch.input_ids, batch.attention_mask);  // [B,T,d]
  // Only the trained positions go through the lm_head: prompt and padding rows would cost
  // a [rows x vocab] GEMM forward and two backward for nothing.
  at::Tensor h = hidden.reshape({-1, hidden.size(-1)});
  at::Tensor t = shift_labels(batch.labels).reshape({-1});
  const at::Tensor keep = t.ne(loss::kIgnoreIndex).nonzero().squeeze(1);
  if (keep.numel() > 0 && keep.numel() < t.numel()) {
    h = h.index_select(0, keep);
    t = t.index_select(0, keep);
  }
  at::Tensor ce = loss::linear_cross_entropy(h, model.lm_head_weight(), t);
  LossTerms out;
  out.total = ce;
  out.terms.emplace_back("ce", ce);
  if (!constraint || cfg.constraint == "none") return out;

  // The policy's hidden states at the response positions, from the same forward pass.
  const int64_t T = hidden.size(1);
  const at::Tensor flat = P.rows.mul(T).add(P.cols).to(hidden.device());
  const at::Tensor hp = hidden.reshape({-1, hidden.size(-1)}).index_select(0, flat);  // [N, d]
  const loss::ConstraintOptions& o = constraint->options;
  at::Tensor valid = at::ones({P.t.numel()}, at::kBool);
  valid = loss::select_positions(o, P.t, valid, ref.mass);
  at::Tensor term, gate;
  if (cfg.constraint == "pact") {
    const at::Tensor S = constraint->S.to(hp.device());
    const at::Tensor WS = model.lm_head_weight().index_select(0, S);  // [K, d]: never the full vocabulary
    const at::Tensor z_theta = at::matmul(hp, WS.t());
    loss::ConstraintResult r =
        loss::pact_loss(z_theta, ref.z_full.to(hp.device()), ref.z_post.defined() ? ref.z_post.to(hp.device()) : at::Tensor(),
                        constraint->w.to(hp.device()), P.t.to(hp.device()), valid.to(hp.device()), o);
    term = r.loss;
    gate = r.gate_mean;
  } else if (cfg.constraint == "kl_full") {
    term = loss::kl_full_loss(model.logits(hp), ref.logits.to(hp.device()), valid.to(hp.device()), o.temperature);
  } else if (cfg.constraint == "anchor") {
    term = loss::anchor_loss(model.logits(hp), ref.logits.to(hp.device()), constraint->S.to(hp.device()),
                             valid.to(hp.device()));
  } else {
    input_error("objective.constraint", "unknown constraint '" + cfg.constraint + "'");
  }
  out.total = ce + cfg.lambda * term;
  out.terms.emplace_back(cfg.constraint, term);
  if (gate.defined()) out.terms.emplace_back("gate", gate);
  return out;
}

}  // namespace safetune::train
