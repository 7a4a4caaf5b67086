// Activation checkpointing with a custom autograd function.
#include "safetune/model/activation_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <mutex>

namespace safetune::model {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The block and the CPU generator state it started from, kept alive in the autograd
// context until backward.
struct Block : torch::CustomClassHolder {
  BlockFn fn;
  at::Tensor rng_state;
};

at::Tensor get_rng() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng(const at::Tensor& s) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(s);
}

class Checkpoint : public torch::autograd::Function<Checkpoint> {
 public:
  // Autograd calls forward with gradients off. fn runs with them on all the same, on a
  // detached input, and its graph is dropped with the detached output: the code paths
  // (dropout only trains with gradients on, some kernels differ without them) and so the
  // numbers are exactly those the recomputation in backward will see.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList params,
                            c10::intrusive_ptr<Block> block) {
    block->rng_state = get_rng();
    std::vector<at::Tensor> saved = {x};
    saved.insert(saved.end(), params.begin(), params.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["block"] = at::IValue::make_capsule(block);
    at::AutoGradMode enable(true);
    return block->fn(x.detach()).detach();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto block = c10::static_intrusive_pointer_cast<Block>(ctx->saved_data["block"].toCapsule());
    variable_list saved = ctx->get_saved_variables();
    at::Tensor x = saved[0].detach().requires_grad_(true);
    // Recompute with the generator where the forward found it, then put it back.
    const at::Tensor now = get_rng();
    set_rng(block->rng_state);
    at::Tensor y;
    {
      at::AutoGradMode enable(true);
      y = block->fn(x);
    }
    set_rng(now);
    variable_list inputs = {x};
    std::vector<size_t> where;  // saved index of each differentiable input after x
    for (size_t i = 1; i < saved.size(); ++i)
      if (saved[i].requires_grad()) {
        inputs.push_back(saved[i]);
        where.push_back(i);
      }
    variable_list g = torch::autograd::grad({y}, inputs, {grad_out[0]}, /*retain_graph=*/false,
                                            /*create_graph=*/false, /*allow_unused=*/true);
    // One gradient per forward input: x, each param, and none for the block.
    variable_list out(saved.size() + 1);
    out[0] = g[0];
    for (size_t k = 0; k < where.size(); ++k) out[where[k]] = g[k + 1];
    return out;
  }
};

}  // namespace

at::Tensor checkpointed(BlockFn fn, const at::Tensor& x, const std::vector<at::Tensor>& params) {
  auto block = c10::make_intrusive<Block>();
  block->fn = std::move(fn);
  return Checkpoint::apply(x, at::TensorList(params), block);
}

}  // namespace safetune::model
