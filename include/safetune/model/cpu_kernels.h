// Fused CPU kernels for the inference-time forward (fp32, no autograd). Each replaces a
// handful of memory-bound ATen ops whose separate passes cost as much as the matmuls
// around them on small models. The transformer uses them only when no gradient is needed,
// on CPU fp32 tensors; the ATen path (same maths) is used otherwise and in tests both are
// compared.
#pragma once
#include <ATen/core/Tensor.h>

namespace safetune::model::cpu {

// Rotate-half RoPE: x [B,T,H,D] (last dim contiguous), cos/sin [B,T,D/2] fp32 contiguous;
// writes out[b,h,t,:] (out [B,H,T,D], any strides but a contiguous last dim).
void rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& out);

// HF LlamaRMSNorm of rows of x [..., d] fp32 contiguous: w * (x * rsqrt(mean(x^2) + eps)).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);

// Residual add and the next norm in one pass: h += delta (in place), returns rms_norm(h).
at::Tensor add_rms_norm_(const at::Tensor& h, const at::Tensor& delta, const at::Tensor& w, double eps);

// x <- cap * tanh(x / cap) in place (HF's soft-capping: divide, tanh, multiply) for a
// contiguous fp32 tensor such as a forward's [tokens, vocab] logits, in one pass.
void softcap_(const at::Tensor& x, double cap);

// g <- gelu_tanh(g) * u in place (Gemma's GeGLU gate), g and u contiguous fp32 of one shape.
void gelu_tanh_mul_(const at::Tensor& g, const at::Tensor& u);

}  // namespace safetune::model::cpu
