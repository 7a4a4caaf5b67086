// Fused CPU kernels (see cpu_kernels.h). Plain loops over contiguous rows, split across
// threads with at::parallel_for; the inner loops are written so the compiler vectorises
// them.
#include "safetune/model/cpu_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>


namespace safetune::model::cpu {

namespace {

// tanh in branch-free float arithmetic that the compiler vectorises (this LibTorch's
// tanh_ costs ~2 ns an element, more than the matmuls around Gemma's soft-caps): the odd
// rational minimax approximation x P(x^2) / Q(x^2) on [-7.9053, 7.9053] that Eigen's
// ptanh_float uses, the input clamped to that range (beyond it tanh is 1 in float to
// within 3e-7). Within 4e-7 of tanh everywhere; tested against ATen's in double.
__attribute__((always_inline)) inline float fast_tanh(float x) {
  const float c = 7.90531110763549805f;
  x = std::min(std::max(x, -c), c);
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 - 8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

// The loops below are compiled twice, for AVX2 and for the baseline, and the CPU picks
// at load time: twice the lanes where AVX2 is there.

// x[i] <- cap * tanh(x[i] / cap).
__attribute__((target_clones("avx2", "default"))) void softcap_row(float* __restrict x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) x[i] = cap * fast_tanh(x[i] / cap);
}

// g[i] <- gelu_tanh(g[i]) * u[i], ATen's tanh-approximate GELU:
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
__attribute__((target_clones("avx2", "default"))) void gelu_tanh_mul_row(float* __restrict g,
                                                                          const float* __restrict u, int64_t n) {
  const float beta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
  for (int64_t i = 0; i < n; ++i) {
    const float x = g[i];
    const float inner = beta * (x + kappa * (x * x * x));
    g[i] = 0.5f * x * (1.0f + fast_tanh(inner)) * u[i];
  }
}

}  // namespace

void rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& out) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat && x.stride(3) == 1 &&
              out.stride(3) == 1 && cos.is_contiguous() && sin.is_contiguous());
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3), half = D / 2;
  const int64_t xs0 = x.stride(0), xs1 = x.stride(1), xs2 = x.stride(2);
  const int64_t os0 = out.stride(0), os1 = out.stride(1), os2 = out.stride(2);
  const float* xp = x.data_ptr<float>();
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B * T, 8, [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const int64_t b = bt / T, t = bt % T;
      const float* __restrict c = cp + bt * half;
      const float* __restrict s = sp + bt * half;
      for (int64_t h = 0; h < H; ++h) {
        const float* __restrict xi = xp + b * xs0 + t * xs1 + h * xs2;
        float* __restrict o = op + b * os0 + h * os1 + t * os2;
        // x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]
        for (int64_t i = 0; i < half; ++i) {
          o[i] = xi[i] * c[i] + (-xi[i + half]) * s[i];
          o[i + half] = xi[i + half] * c[i] + xi[i] * s[i];
        }
      }
    }
  });
}

namespace {

// rows of x (+ delta, written back to x when given) -> w * (x * rsqrt(mean(x^2) + eps))
void rms_norm_rows(float* xp, const float* dp, const float* wp, float* op, int64_t rows, int64_t d, float eps) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* __restrict xi = xp + r * d;
      float* __restrict o = op + r * d;
      if (dp) {
        const float* __restrict di = dp + r * d;
        for (int64_t j = 0; j < d; ++j) xi[j] += di[j];
      }
      // Eight partial sums: vectorisable, and as accurate as ATen's fp32 mean.
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= d; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += xi[i + k] * xi[i + k];
      float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (; i < d; ++i) sum += xi[i] * xi[i];
      const float inv = 1.0f / std::sqrt(sum / static_cast<float>(d) + eps);
      for (int64_t j = 0; j < d; ++j) o[j] = wp[j] * (xi[j] * inv);
    }
  });
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && x.is_contiguous() && w.is_contiguous());
  at::Tensor out = at::empty_like(x);
  const int64_t d = x.size(-1);
  rms_norm_rows(const_cast<float*>(x.data_ptr<float>()), nullptr, w.data_ptr<float>(), out.data_ptr<float>(),
                x.numel() / d, d, static_cast<float>(eps));
  return out;
}

at::Tensor add_rms_norm_(const at::Tensor& h, const at::Tensor& delta, const at::Tensor& w, double eps) {
  TORCH_CHECK(h.scalar_type() == at::kFloat && delta.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
              h.is_contiguous() && delta.is_contiguous() && w.is_contiguous() && h.sizes() == delta.sizes());
  at::Tensor out = at::empty_like(h);
  const int64_t d = h.size(-1);
  rms_norm_rows(h.data_ptr<float>(), delta.data_ptr<float>(), w.data_ptr<float>(), out.data_ptr<float>(),
                h.numel() / d, d, static_cast<float>(eps));
  return out;
}

void softcap_(const at::Tensor& x, double cap) {
  TORCH_CHECK(x.is_contiguous() && x.scalar_type() == at::kFloat);
  float* p = x.data_ptr<float>();
  at::parallel_for(0, x.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    softcap_row(p + begin, end - begin, static_cast<float>(cap));
  });
}

void gelu_tanh_mul_(const at::Tensor& g, const at::Tensor& u) {
  TORCH_CHECK(g.is_contiguous() && u.is_contiguous() && g.scalar_type() == at::kFloat &&
              u.scalar_type() == at::kFloat && g.sizes() == u.sizes());
  float* gp = g.data_ptr<float>();
  const float* up = u.data_ptr<float>();
  at::parallel_for(0, g.numel(), 1 << 14,
                   [&](int64_t begin, int64_t end) { gelu_tanh_mul_row(gp + begin, up + begin, end - begin); });
}

}  // namespace safetune::model::cpu
