// Cross-entropy of a linear classifier (the lm_head) straight from final hidden states.
//
// The fused path never holds the [tokens x vocab] logits: it walks the tokens in chunks,
// computes each chunk's logits, its loss, and the gradient of the loss for the hidden
// states and the weight right away (softmax minus one-hot, overwritten in place), then
// drops the chunk. Backward only scales the stored gradients by the incoming one. Same
// idea as Liger-Kernel's fused linear cross-entropy and llm.c's fused classifier.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace safetune::loss {

constexpr int64_t kIgnoreIndex = -100;

struct CrossEntropyOptions {
  int64_t chunk_tokens = 1024;  // rows of logits alive at once
  int64_t ignore_index = kIgnoreIndex;
};

// Mean over targets != ignore_index of -log softmax(hidden @ weight^T)[target].
// hidden: [..., d] (requires grad), weight: [V, d] (grad computed only if it requires
// grad: frozen under LoRA), targets: [...] int64. Returns a scalar that autograd
// differentiates for hidden and weight. 0 (with zero gradients) when nothing is trained.
at::Tensor fused_linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight,
                                      const at::Tensor& targets, const CrossEntropyOptions& options = {});

// The unfused composition (full logits, then at::cross_entropy), kept for checking.
at::Tensor linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                int64_t ignore_index = kIgnoreIndex);

}  // namespace safetune::loss
