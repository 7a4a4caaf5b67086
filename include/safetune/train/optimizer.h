// AdamW and gradient clipping, with the semantics of torch.optim.AdamW and
// torch.nn.utils.clip_grad_norm_ (so that a run can be compared with a PyTorch one).
//
// Update for each parameter p with gradient g, at its own step count t (starting at 1;
// a parameter without a gradient is skipped and its t does not advance, as in torch):
//   p  <- p * (1 - lr * weight_decay)                      (decoupled decay)
//   m  <- beta1 m + (1 - beta1) g
//   v  <- beta2 v + (1 - beta2) g^2
//   p  <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Moments are fp32 whatever the parameter dtype. A parameter that is not fp32 (bf16 weights
// on CUDA, or model.dtype = bf16) gets an fp32 master copy: the update is applied to the
// master and the parameter receives its rounding, so that updates smaller than half a
// bf16 ulp accumulate instead of being lost. The state is exposed as named tensors
// ("<name>.exp_avg", "<name>.exp_avg_sq", "<name>.step", and "<name>.master" for
// non-fp32 parameters) so that a checkpoint can store it and restore it bit for bit.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "safetune/train/adamw_options.h"

namespace safetune::train {

class AdamW {
 public:
  // `params` are leaf tensors whose .grad() the caller fills; `names` (optional, one per
  // parameter) name their state entries, default "0", "1", ...
  AdamW(std::vector<at::Tensor> params, AdamWOptions options, std::vector<std::string> names = {});

  // One update of every parameter that has a defined gradient, at the current lr.
  void step();
  void zero_grad();  // sets defined gradients to zero

  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  const AdamWOptions& options() const { return options_; }
  const std::vector<at::Tensor>& params() const { return params_; }
  // The fp32 master copy of `param` (one of params()), undefined when it has none (fp32).
  at::Tensor master_of(const at::Tensor& param) const;

  // The state as named tensors (views of the live state: copy before changing them).
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  // Restores a state saved by state(): every entry must be present with the same shape
  // and dtype (InputError naming `where` otherwise); values are copied bit for bit.
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, const std::string& where);

 private:
  void step_one(size_t i);

  std::vector<at::Tensor> params_;
  std::vector<std::string> names_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;  // fp32, same shape as the parameter
  std::vector<at::Tensor> master_;  // fp32 copy of a non-fp32 parameter; undefined for fp32 ones
  std::vector<int64_t> steps_;
  AdamWOptions options_;
};

// Scales the gradients of `params` in place so their global L2 norm is at most max_norm,
// as torch.nn.utils.clip_grad_norm_: total = ||(||g_1||, ||g_2||, ...)||,
// coef = min(max_norm / (total + 1e-6), 1), every g <- g * coef. Parameters without a
// gradient are ignored. max_norm <= 0: only measures. Returns the norm before clipping
// (NaN or inf when a gradient is not finite; the gradients are then scaled by NaN too,
// as torch does, and the caller is expected to stop).
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace safetune::train
