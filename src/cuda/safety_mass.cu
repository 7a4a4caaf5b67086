// safety_mass's bucket KL over the safety columns S at temperature 1, per row.
//
// Like the anchor: the model's absolute probabilities on S need the whole row's logsumexp,
// which the cross-entropy kernel computes (lse only) before this one runs; the reference's
// buckets come in precomputed (no gradient). One warp owns a row and reads its K logits
// through the column ids. The gradient's dense part, T c softmax(z) with
// c = 1 - a_R / p_R, goes back as one coefficient per row for the cross-entropy kernel to
// fold into the gradient it writes anyway: no extra pass over the vocabulary.
// p_R = 1 - p_S comes from log-sum-exps (-expm1(log p_S)), floored at rest_floor.
#include "common.cuh"
#include "safetune/cuda/loss_kernels.h"

namespace safetune::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    safety_mass_kernel(const __nv_bfloat16* z_theta, int64_t ld_theta, const int64_t* cols, const float* lse_theta,
                       const float* a_ref, int64_t ld_ref, const float* a_rest, const uint8_t* valid, int64_t n,
                       int64_t K, float grad_scale, float rest_floor, float* losses, float* mass_terms, float* grad,
                       float* row_coef) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (r >= n) return;
  float* g = grad + r * K;
  if (valid && !valid[r]) {
    for (int64_t j = lane; j < K; j += 32) g[j] = 0.f;
    if (lane == 0) losses[r] = 0.f, mass_terms[r] = 0.f, row_coef[r] = 0.f;
    return;
  }
  const __nv_bfloat16* zt = z_theta + r * ld_theta;
  const float* a = a_ref + r * ld_ref;
  const float lse = lse_theta[r];
  auto log_p = [&](int64_t j) { return detail::to_float(zt[cols ? cols[j] : j]) - lse; };

  // Pass 1: log p_S (max, then sum) and a_S.
  float m = -INFINITY;
  for (int64_t j = lane; j < K; j += 32) m = fmaxf(m, log_p(j));
  m = detail::warp_max(m);
  float s = 0.f, a_S = 0.f;
  for (int64_t j = lane; j < K; j += 32) {
    s += expf(log_p(j) - m);
    a_S += a[j];
  }
  s = detail::warp_sum(s);
  a_S = detail::warp_sum(a_S);
  const float log_p_S = fminf(m + logf(s), 0.f);
  const float p_rest = fmaxf(-expm1f(log_p_S), 0.f);
  const float A_R = fmaxf(a_rest[r], rest_floor), P_R = fmaxf(p_rest, rest_floor);
  const float rest_term = a_rest[r] * (logf(A_R) - logf(P_R));
  const float c = 1.f - A_R / P_R;

  // Pass 2: the loss on S and the sparse gradient.
  float kl = 0.f;
  for (int64_t j = lane; j < K; j += 32) {
    const float lp = log_p(j);
    if (a[j] > 0.f) kl += a[j] * (logf(a[j]) - lp);
    g[j] = grad_scale * (expf(lp) * (1.f - c) - a[j]);
  }
  kl = detail::warp_sum(kl);
  if (lane == 0) {
    losses[r] = kl + rest_term;
    mass_terms[r] = (a_S > 0.f ? a_S * (logf(a_S) - log_p_S) : 0.f) + rest_term;
    row_coef[r] = grad_scale * c;
  }
}

}  // namespace

void safety_mass_rows(const SafetyMassRows& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  if (a.K <= 0 || !a.z_theta || !a.lse_theta || !a.a || !a.a_rest || !a.losses || !a.mass_terms || !a.grad ||
      !a.row_coef || a.ld_ref < a.K || (!a.cols && a.ld_theta < a.K) || !(a.rest_floor > 0.f))
    throw std::runtime_error("safety_mass_rows: bad arguments");
  const int64_t blocks = (a.n + kWarpsPerBlock - 1) / kWarpsPerBlock;
  safety_mass_kernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
      a.z_theta, a.ld_theta, a.cols, a.lse_theta, a.a, a.ld_ref, a.a_rest, a.valid, a.n, a.K, a.grad_scale,
      a.rest_floor, a.losses, a.mass_terms, a.grad, a.row_coef);
  detail::check_launch("safety_mass_rows");
}

}  // namespace safetune::cuda
