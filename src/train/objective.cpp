// Objective: fused cross-entropy on the response tokens, plus lambda x a safety constraint
// against a frozen reference (reference.h).
#include "safetune/train/objective.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "safetune/core/error.h"
#include "safetune/loss/constraints.h"
#include "safetune/loss/cross_entropy.h"
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
  at::Tensor ce = loss::fused_linear_cross_entropy(h, model.lm_head_weight(), t);
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
