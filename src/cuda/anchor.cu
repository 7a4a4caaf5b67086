// The anchor term over the safety columns S: squared differences of log-probabilities
// (over the whole vocabulary) between the model and the reference, per row.
//
// The model's log p on S needs the whole row's logsumexp, which the cross-entropy kernel
// computes (lse only) before this one runs; the reference's log-probabilities on S come in
// precomputed (they carry no gradient). The gradient has a sparse part on S and a dense
// part, -2 sum_j a_j softmax(z)_i over the whole row, handed back as one coefficient per row
// for the cross-entropy kernel to fold into the gradient it writes anyway.
#include "common.cuh"
#include "safetune/cuda/loss_kernels.h"

namespace safetune::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    anchor_kernel(const __nv_bfloat16* z_theta, int64_t ld_theta, const int64_t* cols, const float* lse_theta,
                  const float* logp_ref, int64_t ld_ref, const uint8_t* valid, int64_t n, int64_t K, float grad_scale,
                  float* losses, float* grad, float* row_coef) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (r >= n) return;
  float* g = grad + r * K;
  const bool on = !valid || valid[r];
  const __nv_bfloat16* zt = z_theta + r * ld_theta;
  const float* lr = logp_ref + r * ld_ref;
  const float lse = on ? lse_theta[r] : 0.f;
  float sq = 0.f, sum = 0.f;
  for (int64_t j = lane; j < K; j += 32) {
    float a = 0.f;
    if (on) a = detail::to_float(zt[cols ? cols[j] : j]) - lse - lr[j];
    sq += a * a;
    sum += a;
    g[j] = 2.f * grad_scale * a;
  }
  sq = detail::warp_sum(sq);
  sum = detail::warp_sum(sum);
  if (lane == 0) {
    losses[r] = sq;
    row_coef[r] = -2.f * grad_scale * sum;
  }
}

}  // namespace

void anchor_rows(const AnchorRows& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  if (a.K <= 0 || !a.z_theta || !a.lse_theta || !a.logp_ref || !a.losses || !a.grad || !a.row_coef ||
      a.ld_ref < a.K || (!a.cols && a.ld_theta < a.K))
    throw std::runtime_error("anchor_rows: bad arguments");
  const int64_t blocks = (a.n + kWarpsPerBlock - 1) / kWarpsPerBlock;
  anchor_kernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
      a.z_theta, a.ld_theta, a.cols, a.lse_theta, a.logp_ref, a.ld_ref, a.valid, a.n, a.K, a.grad_scale, a.losses,
      a.grad, a.row_coef);
  detail::check_launch("anchor_rows");
}

}  // namespace safetune::cuda
