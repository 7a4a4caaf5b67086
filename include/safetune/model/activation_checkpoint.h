// Activation checkpointing: run a block without keeping its intermediate activations and
// recompute them during backward (as torch.utils.checkpoint does, with the RNG state
// preserved so that dropout draws the same masks when recomputed).
#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace safetune::model {

using BlockFn = std::function<at::Tensor(const at::Tensor&)>;

// y = fn(x), keeping only x for backward. `params` are the tensors fn reads that may need
// gradients (its weights, adapters); they receive them as if fn had run with autograd.
// fn must own (capture by value) everything it needs: backward calls it again later.
at::Tensor checkpointed(BlockFn fn, const at::Tensor& x, const std::vector<at::Tensor>& params);

}  // namespace safetune::model
