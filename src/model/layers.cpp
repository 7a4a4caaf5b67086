// Linear (with LoRA), RMSNorm, Embedding: the decoder's small modules.
#include "safetune/model/layers.h"

#include <ATen/ATen.h>

#include "safetune/model/cpu_kernels.h"

namespace safetune::model {

at::ScalarType compute_dtype_for(const c10::Device& device) {
  return device.is_cuda() ? at::kBFloat16 : at::kFloat;
}

Linear::Linear(int64_t in, int64_t out, bool has_bias, const at::TensorOptions& opts)
    : in_features(in), out_features(out) {
  weight = register_parameter("weight", at::empty({out, in}, opts));
  if (has_bias) bias = register_parameter("bias", at::empty({out}, opts));
}

at::Tensor Linear::forward(const at::Tensor& x) const {
  at::Tensor y = at::linear(x, weight, bias);
  if (lora_enabled && lora_A.defined() && lora_B.defined()) {
    // PEFT: dropout on the adapter's input only, in training (the base path sees x).
    const bool drop = lora_dropout > 0 && is_training() && at::GradMode::is_enabled();
    const at::Tensor xa = drop ? at::dropout(x, lora_dropout, /*train=*/true) : x;
    y = y + at::linear(at::linear(xa, lora_A), lora_B) * lora_scaling;
  }
  return y;
}

RMSNorm::RMSNorm(int64_t dim, double eps_, const at::TensorOptions& opts, bool plus_one_)
    : eps(eps_), plus_one(plus_one_) {
  weight = register_parameter("weight", at::empty({dim}, opts));
}

bool fused_cpu(const at::Tensor& t) {
  return !at::GradMode::is_enabled() && t.device().is_cpu() && t.scalar_type() == at::kFloat;
}

at::Tensor RMSNorm::scale() const { return plus_one ? weight.to(at::kFloat) + 1.0 : weight; }

at::Tensor RMSNorm::forward(const at::Tensor& x) const {
  if (fused_cpu(x) && x.is_contiguous() && weight.scalar_type() == at::kFloat) return cpu::rms_norm(x, scale(), eps);
  // HF: variance in fp32, normalise in fp32, cast back to the input dtype, then scale.
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  at::Tensor normed = xf * at::rsqrt(var + eps);
  // Gemma scales in fp32 before the cast (HF: "(x * (1.0 + w.float())).type_as(x)").
  if (plus_one) return (normed * scale()).to(x.scalar_type());
  return weight * normed.to(x.scalar_type());
}

Embedding::Embedding(int64_t num, int64_t dim, const at::TensorOptions& opts) {
  weight = register_parameter("weight", at::empty({num, dim}, opts));
}

at::Tensor Embedding::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

}  // namespace safetune::model
