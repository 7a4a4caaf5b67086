// AdamW (torch.optim.AdamW semantics, non-amsgrad) and clip_grad_norm_.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>

#include "safetune/core/error.h"
#include "safetune/train/optimizer.h"

namespace safetune::train {

AdamW::AdamW(std::vector<at::Tensor> params, AdamWOptions options, std::vector<std::string> names)
    : params_(std::move(params)), names_(std::move(names)), options_(options) {
  if (names_.empty())
    for (size_t i = 0; i < params_.size(); ++i) names_.push_back(std::to_string(i));
  TORCH_CHECK(names_.size() == params_.size(), "AdamW: ", names_.size(), " names for ", params_.size(), " parameters");
  for (const at::Tensor& p : params_) {
    // Allocated up front (torch does it lazily at the first step) so that state() is
    // complete from the start and a restore has somewhere to copy into.
    exp_avg_.push_back(at::zeros(p.sizes(), p.options().dtype(at::kFloat)));
    exp_avg_sq_.push_back(at::zeros(p.sizes(), p.options().dtype(at::kFloat)));
    master_.push_back(p.scalar_type() == at::kFloat ? at::Tensor() : p.detach().to(at::kFloat).contiguous());
    steps_.push_back(0);
  }
}

void AdamW::step() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].grad().defined()) step_one(i);
}

void AdamW::zero_grad() {
  for (at::Tensor& p : params_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

void AdamW::step_one(size_t i) {
  at::Tensor& param = params_[i];
  at::Tensor& m = exp_avg_[i];
  at::Tensor& v = exp_avg_sq_[i];
  const int64_t t = ++steps_[i];
  const double lr = options_.lr, beta1 = options_.beta1, beta2 = options_.beta2;
  // Scalars in double exactly as the Python implementation computes them.
  const double decay = 1 - lr * options_.weight_decay;
  const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(t));
  const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(t));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  const at::Tensor grad = param.grad().to(at::kFloat);

  const bool fused = options_.fused && param.device().is_cpu() && param.scalar_type() == at::kFloat &&
                     param.is_contiguous() && grad.is_contiguous();
  if (fused) {
    // The op-by-op sequence below, one element at a time in fp32 (ATen casts the
    // double scalars to the tensor's float type the same way).
    float* pp = param.data_ptr<float>();
    float* mp = m.data_ptr<float>();
    float* vp = v.data_ptr<float>();
    const float* gp = grad.data_ptr<float>();
    const float f_decay = static_cast<float>(decay), f_b1 = static_cast<float>(beta1),
                f_b2 = static_cast<float>(beta2), f_1mb1 = static_cast<float>(1 - beta1),
                f_1mb2 = static_cast<float>(1 - beta2), f_bc2 = static_cast<float>(bias_correction2_sqrt),
                f_eps = static_cast<float>(options_.eps), f_neg_step = static_cast<float>(-step_size);
    const bool has_decay = options_.weight_decay != 0;
    at::parallel_for(0, param.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const float g = gp[j];
        float p = pp[j];
        if (has_decay) p *= f_decay;
        const float mj = mp[j] * f_b1 + f_1mb1 * g;
        const float vj = vp[j] * f_b2 + f_1mb2 * (g * g);
        const float denom = std::sqrt(vj) / f_bc2 + f_eps;
        pp[j] = p + f_neg_step * (mj / denom);
        mp[j] = mj;
        vp[j] = vj;
      }
    });
    return;
  }

  // Any device / dtype / layout: the reference sequence of ops, in fp32 (on the master
  // copy for a non-fp32 parameter).
  at::Tensor p32 = master_[i].defined() ? master_[i] : param;
  p32.mul_(decay);
  m.mul_(beta1).add_(grad, 1 - beta1);
  v.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
  const at::Tensor denom = (v.sqrt() / bias_correction2_sqrt).add_(options_.eps);
  p32.addcdiv_(m, denom, -step_size);
  if (!p32.is_same(param)) param.copy_(p32);
}

at::Tensor AdamW::master_of(const at::Tensor& param) const {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].is_same(param)) return master_[i];
  return {};
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(names_[i] + ".exp_avg", exp_avg_[i]);
    out.emplace_back(names_[i] + ".exp_avg_sq", exp_avg_sq_[i]);
    out.emplace_back(names_[i] + ".step", at::full({1}, steps_[i], at::TensorOptions().dtype(at::kLong)));
    if (master_[i].defined()) out.emplace_back(names_[i] + ".master", master_[i]);
  }
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, const std::string& where) {
  auto find = [&](const std::string& name) -> const at::Tensor& {
    for (const auto& [n, t] : state)
      if (n == name) return t;
    input_error(where, "optimizer state lacks '" + name + "'");
  };
  auto check = [&](const std::string& name, const at::Tensor& src, const at::Tensor& dst) {
    if (src.sizes() != dst.sizes() || src.scalar_type() != dst.scalar_type())
      input_error(where, "optimizer state '" + name + "' has the wrong shape or dtype");
  };
  // Check everything before changing anything, so a bad state leaves the optimizer intact.
  std::vector<int64_t> steps(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    check(names_[i] + ".exp_avg", find(names_[i] + ".exp_avg"), exp_avg_[i]);
    check(names_[i] + ".exp_avg_sq", find(names_[i] + ".exp_avg_sq"), exp_avg_sq_[i]);
    if (master_[i].defined()) check(names_[i] + ".master", find(names_[i] + ".master"), master_[i]);
    const at::Tensor& s = find(names_[i] + ".step");
    if (s.numel() != 1 || s.scalar_type() != at::kLong || s.item<int64_t>() < 0)
      input_error(where, "optimizer state '" + names_[i] + ".step' must be one non-negative int64");
    steps[i] = s.item<int64_t>();
  }
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_(find(names_[i] + ".exp_avg"));
    exp_avg_sq_[i].copy_(find(names_[i] + ".exp_avg_sq"));
    if (master_[i].defined()) master_[i].copy_(find(names_[i] + ".master"));
  }
  steps_ = steps;
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads, norms;
  for (const at::Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  // Per-tensor norms, then the norm of the norms, in the gradients' dtype (as torch).
  for (const at::Tensor& g : grads) norms.push_back(at::norm(g, 2).to(grads[0].device()));
  const at::Tensor total = at::norm(at::stack(norms), 2);
  if (max_norm > 0) {
    const at::Tensor coef = at::clamp_max(max_norm / (total + 1e-6), 1.0);
    for (at::Tensor& g : grads) g.mul_(coef.to(g.device()));
  }
  return total.item<double>();
}

}  // namespace safetune::train
