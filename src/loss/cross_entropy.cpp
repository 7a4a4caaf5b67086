#include "safetune/loss/cross_entropy.h"

#include <torch/torch.h>

#include "safetune/loss/fused_objective.h"

namespace safetune::loss {

// The cross-entropy alone is the fused objective without a constraint.
at::Tensor fused_linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                      const CrossEntropyOptions& options) {
  TORCH_CHECK(options.chunk_tokens > 0, "chunk_tokens must be positive");
  const at::Tensor h = hidden.reshape({-1, hidden.size(-1)});
  return fused_objective(h, weight, targets.reshape({-1}), ObjectiveSpec{}, ConstraintInputs{},
                         {options.chunk_tokens, options.ignore_index})
      .total;
}

at::Tensor linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                int64_t ignore_index) {
  const at::Tensor logits = at::matmul(hidden, weight.t()).to(at::kFloat);
  const at::Tensor t = targets.reshape({-1});
  if (t.ne(ignore_index).sum().item<int64_t>() == 0) return (logits.sum() * 0.0);
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), t, {}, at::Reduction::Mean, ignore_index);
}

}  // namespace safetune::loss
