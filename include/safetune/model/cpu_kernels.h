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

// In place on scores [N, T, S] (rows of query t = row % T): causal softmax where query t
// (slot offset + t) sees keys j <= offset + t, and with window > 0 only j > offset + t - window;
// blocked entries become 0. With softcap > 0 the visible scores are soft-capped first,
// softcap * tanh(x / softcap).
void causal_softmax_(const at::Tensor& scores, int64_t T, int64_t offset, int64_t window, double softcap = 0);

// Causal self-attention for inference, one (batch row, key head) at a time so that its
// [n_rep*T, S] score block stays in cache: q [B,H,T,D] contiguous and already scaled by
// 1/sqrt(D), k and v [B,Hkv,S,D] (any strides with a contiguous last dim). Returns the
// attention output already laid out as [B,T,H*D] for o_proj. BLAS runs single-threaded
// inside, the (row, head) blocks run in parallel: small GEMMs scale better that way. With
// softcap > 0 the scores are soft-capped first, softcap * tanh(x / softcap) (Gemma 2).
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                            double softcap = 0);

// x <- cap * tanh(x / cap) in place (HF's soft-capping: divide, tanh, multiply) for a
// contiguous fp32 tensor such as a forward's [tokens, vocab] logits, in one pass.
void softcap_(const at::Tensor& x, double cap);

// g <- gelu_tanh(g) * u in place (Gemma's GeGLU gate), g and u contiguous fp32 of one shape.
void gelu_tanh_mul_(const at::Tensor& g, const at::Tensor& u);

}  // namespace safetune::model::cpu
