// Adds the safety-column gradients ([n, K] fp32) into the columns S of the logits
// gradient rows that the cross-entropy kernel wrote over the logits.
//
// S is a set, so no two threads touch the same element: a plain read-add-write, no atomics.
#include "common.cuh"
#include "safetune/cuda/loss_kernels.h"

namespace safetune::cuda {
namespace {

__global__ void add_subset_grad_kernel(__nv_bfloat16* grad_rows, int64_t ld, const int64_t* cols, const float* g,
                                       int64_t n, int64_t K) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * K) return;
  const int64_t r = i / K, j = i % K;
  __nv_bfloat16* p = grad_rows + r * ld + (cols ? cols[j] : j);
  *p = __float2bfloat16(detail::to_float(*p) + g[i]);
}

}  // namespace

void add_subset_grad(__nv_bfloat16* grad_rows, int64_t ld, const int64_t* cols, const float* g, int64_t n, int64_t K,
                     cudaStream_t stream) {
  if (n <= 0 || K <= 0) return;
  if (!grad_rows || !g) throw std::runtime_error("add_subset_grad: null pointer");
  constexpr int threads = 256;
  const int64_t blocks = (n * K + threads - 1) / threads;
  add_subset_grad_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(grad_rows, ld, cols, g, n, K);
  detail::check_launch("add_subset_grad");
}

}  // namespace safetune::cuda
