// The decoder's small modules, named and laid out as HF's: Linear (with LoRA's optional
// low-rank path), RMSNorm (Llama's and Gemma's), Embedding; and the dtype policy.
#pragma once
#include <torch/nn/module.h>

#include <cstdint>

namespace safetune::model {

// The dtype policy, in one place: weights stored in bf16/f16/f32 compute in fp32 on CPU
// (CPU half-precision GEMMs are slow and lose accuracy) and in bf16 on CUDA.
at::ScalarType compute_dtype_for(const c10::Device& device);

// y = x W^T + b, W stored [out, in] as HF's nn.Linear. A plain module (not
// torch::nn::Linear) so that LoRA can attach to it: when lora_A [r, in] and lora_B [out, r]
// are defined and lora_enabled, forward adds lora_scaling * (x A^T) B^T. The adapter code
// registers and names those tensors; the base model leaves them undefined.
class Linear : public torch::nn::Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x) const;

  int64_t in_features, out_features;
  at::Tensor weight, bias;  // bias undefined when absent
  at::Tensor lora_A, lora_B;
  double lora_scaling = 0.0;
  double lora_dropout = 0.0;  // on the adapter's input, only while training with gradients
  bool lora_enabled = true;
};

// HF's LlamaRMSNorm: normalise in fp32, cast back to the input dtype, then scale.
// With plus_one, HF's GemmaRMSNorm: normalise and scale by (1 + w) in fp32, then cast.
class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(int64_t dim, double eps, const at::TensorOptions& opts, bool plus_one = false);
  at::Tensor forward(const at::Tensor& x) const;
  // The factor the normalised rows are multiplied by: weight, or 1 + weight.
  at::Tensor scale() const;
  at::Tensor weight;
  double eps;
  bool plus_one;
};

class Embedding : public torch::nn::Module {
 public:
  Embedding(int64_t num, int64_t dim, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& ids) const;
  at::Tensor weight;  // [num, dim]
};

// Whether the fused CPU kernels (cpu_kernels.h) may replace the ATen ops for `t`: no
// gradient needed, a CPU fp32 tensor.
bool fused_cpu(const at::Tensor& t);

}  // namespace safetune::model
