// Objective: fused cross-entropy on the response tokens; constraints come later.
#include "safetune/train/objective.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "safetune/core/error.h"
#include "safetune/loss/cross_entropy.h"

namespace safetune::train {

void check_objective(const ObjectiveConfig& cfg) {
  if (cfg.constraint != "none")
    input_error("objective.constraint", "'" + cfg.constraint + "' is not implemented yet (use none)");
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

LossTerms compute_objective(const ObjectiveConfig& cfg, model::Transformer& model, const data::Batch& batch) {
  check_objective(cfg);
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
  // Constraint terms (lambda x KL to the reference on safety tokens) are added here.
  return out;
}

}  // namespace safetune::train
