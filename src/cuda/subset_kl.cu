// PACT's weighted subset KL over the safety columns S, loss and gradient per row.
//
// K is small (tens to a few hundred columns), so one warp owns a row: it reads the row's K
// model logits straight out of the full logits chunk (through the column ids, before the
// cross-entropy kernel overwrites them) and the K reference logits, and writes the loss and
// the [K] gradient. Three strided passes over K, all from L1/L2.
#include "common.cuh"
#include "safetune/cuda/loss_kernels.h"

namespace safetune::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    subset_kl_kernel(const __nv_bfloat16* z_theta, int64_t ld_theta, const int64_t* cols, const float* z_ref,
                     int64_t ld_ref, const float* w, const uint8_t* valid, int64_t n, int64_t K, float T,
                     float grad_scale, float* losses, float* grad) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (r >= n) return;
  float* g = grad + r * K;
  if (valid && !valid[r]) {
    for (int64_t j = lane; j < K; j += 32) g[j] = 0.f;
    if (lane == 0) losses[r] = 0.f;
    return;
  }
  const __nv_bfloat16* zt = z_theta + r * ld_theta;
  const float* zr = z_ref + r * ld_ref;
  const float inv_T = 1.f / T;
  auto theta = [&](int64_t j) { return detail::to_float(zt[cols ? cols[j] : j]) * inv_T; };

  // Pass 1: maxima of both rows (for stable exponentials).
  float mt = -INFINITY, mr = -INFINITY;
  for (int64_t j = lane; j < K; j += 32) {
    mt = fmaxf(mt, theta(j));
    mr = fmaxf(mr, zr[j] * inv_T);
  }
  mt = detail::warp_max(mt);
  mr = detail::warp_max(mr);
  // Pass 2: the normalisers: sum exp of the model's row, weighted sum exp of the reference.
  float st = 0.f, sr = 0.f;
  for (int64_t j = lane; j < K; j += 32) {
    st += expf(theta(j) - mt);
    sr += expf(zr[j] * inv_T - mr) * w[j];
  }
  st = detail::warp_sum(st);
  sr = detail::warp_sum(sr);
  const float log_st = logf(st);
  // q = softmax(z_ref / T) * w renormalised = exp(z_ref / T - mr) w / sr. With every weight 0
  // q is 0 (torch clamps the sum at 1e-30): no loss and no gradient.
  const float inv_sr = sr > 0.f ? 1.f / sr : 0.f;
  float kl = 0.f, q_sum = 0.f;
  for (int64_t j = lane; j < K; j += 32) {
    const float e = expf(zr[j] * inv_T - mr) * w[j];
    const float q = e * inv_sr;
    const float log_p = theta(j) - mt - log_st;
    if (q > 0.f) kl += q * (logf(e) - logf(sr) - log_p);
    q_sum += q;
  }
  kl = detail::warp_sum(kl);
  q_sum = detail::warp_sum(q_sum);
  // d/dz_j [T^2 sum_k q_k (log q_k - log p_k)] = T (p_j sum_k q_k - q_j).
  const float s = grad_scale * T;
  for (int64_t j = lane; j < K; j += 32) {
    const float p = expf(theta(j) - mt) / st;
    const float q = expf(zr[j] * inv_T - mr) * w[j] * inv_sr;
    g[j] = s * (p * q_sum - q);
  }
  if (lane == 0) losses[r] = T * T * kl;
}

}  // namespace

void subset_kl_rows(const SubsetKl& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  if (a.K <= 0 || !a.z_theta || !a.z_ref || !a.w || !a.losses || !a.grad || a.ld_ref < a.K ||
      (!a.cols && a.ld_theta < a.K))
    throw std::runtime_error("subset_kl_rows: bad arguments");
  if (!(a.temperature > 0.f)) throw std::runtime_error("subset_kl_rows: temperature must be positive");
  const int64_t blocks = (a.n + kWarpsPerBlock - 1) / kWarpsPerBlock;
  subset_kl_kernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
      a.z_theta, a.ld_theta, a.cols, a.z_ref, a.ld_ref, a.w, a.valid, a.n, a.K, a.temperature, a.grad_scale,
      a.losses, a.grad);
  detail::check_launch("subset_kl_rows");
}

}  // namespace safetune::cuda
