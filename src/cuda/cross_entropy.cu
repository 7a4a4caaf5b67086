// Cross-entropy over the rows of a bf16 logits chunk, the gradient written in place.
//
// One block per row. Pass 1 walks the row in tiles of 8 bf16 (16-byte loads), each thread
// keeping an online-softmax state over its own tiles; the block merges the states into the
// row's logsumexp. Pass 2 reads the row again and overwrites it with dL/dz. The logits are
// read twice and written once, never copied to fp32: at V = 128k the chunk's logits are the
// only [n, V] buffer that exists (as llm.c's fused classifier does it).
#include "common.cuh"
#include "safetune/cuda/loss_kernels.h"

namespace safetune::cuda {
namespace {

using detail::SoftmaxState;

constexpr int kThreads = 512;
constexpr int kVec = 8;  // bf16 per 16-byte load

struct alignas(16) Bf16x8 {
  __nv_bfloat16 v[kVec];
};

__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(__nv_bfloat16* logits, int64_t V, int64_t ld, const int64_t* targets, int64_t ignore_index,
                         float grad_scale, const float* lse_in, const float* row_coef, float* losses, float* lse_out,
                         bool write_grad) {
  __shared__ SoftmaxState scratch[kThreads / 32];
  __shared__ float target_logit;
  const int64_t r = blockIdx.x;
  __nv_bfloat16* row = logits + r * ld;
  // Whole 16-byte tiles when the row is aligned for them; the rest element by element.
  const bool aligned = (reinterpret_cast<uintptr_t>(row) % 16) == 0;
  const int64_t n_vec = aligned ? V / kVec : 0;
  const int64_t tail = n_vec * kVec;

  const int64_t t = targets ? targets[r] : ignore_index;
  const bool counted = targets && t != ignore_index && t >= 0 && t < V;
  if (threadIdx.x == 0) target_logit = counted ? detail::to_float(row[t]) : 0.f;

  float lse;
  if (lse_in) {
    lse = lse_in[r];
  } else {
    SoftmaxState s;
    const Bf16x8* tiles = reinterpret_cast<const Bf16x8*>(row);
    for (int64_t i = threadIdx.x; i < n_vec; i += blockDim.x) {
      const Bf16x8 x = tiles[i];
      // One max per tile, then one rescale: fewer exps than adding the values one by one.
      float m = detail::to_float(x.v[0]);
#pragma unroll
      for (int k = 1; k < kVec; ++k) m = fmaxf(m, detail::to_float(x.v[k]));
      float sum = 0.f;
#pragma unroll
      for (int k = 0; k < kVec; ++k) sum += expf(detail::to_float(x.v[k]) - m);
      s = detail::softmax_merge(s, SoftmaxState{m, sum});
    }
    for (int64_t i = tail + threadIdx.x; i < V; i += blockDim.x) detail::softmax_add(s, detail::to_float(row[i]));
    s = detail::block_softmax_merge(s, scratch);
    lse = s.max + logf(s.sum);
  }
  __syncthreads();  // target_logit is read below, and pass 2 overwrites the row
  if (threadIdx.x == 0) {
    if (losses) losses[r] = counted ? lse - target_logit : 0.f;
    if (lse_out) lse_out[r] = lse;
  }
  if (!write_grad) return;

  const float c = counted ? grad_scale : 0.f;
  const float coef = c + (row_coef ? row_coef[r] : 0.f);
  Bf16x8* tiles = reinterpret_cast<Bf16x8*>(row);
  for (int64_t i = threadIdx.x; i < n_vec; i += blockDim.x) {
    Bf16x8 x = tiles[i];
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const int64_t col = i * kVec + k;
      const float g = expf(detail::to_float(x.v[k]) - lse) * coef - (col == t ? c : 0.f);
      x.v[k] = __float2bfloat16(g);
    }
    tiles[i] = x;
  }
  for (int64_t i = tail + threadIdx.x; i < V; i += blockDim.x) {
    const float g = expf(detail::to_float(row[i]) - lse) * coef - (i == t ? c : 0.f);
    row[i] = __float2bfloat16(g);
  }
}

}  // namespace

void cross_entropy_rows(const CrossEntropyRows& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  if (a.V <= 0 || a.ld < a.V || !a.logits) throw std::runtime_error("cross_entropy_rows: bad logits shape");
  if (a.n > 0x7fffffff) throw std::runtime_error("cross_entropy_rows: too many rows for one launch");
  cross_entropy_kernel<<<static_cast<unsigned>(a.n), kThreads, 0, stream>>>(
      a.logits, a.V, a.ld, a.targets, a.ignore_index, a.grad_scale, a.lse_in, a.row_coef, a.losses, a.lse_out,
      a.write_grad);
  detail::check_launch("cross_entropy_rows");
}

}  // namespace safetune::cuda
