// Small device helpers shared by the loss kernels: bf16 loads, warp and block reductions,
// and the (max, sum) pair of the online softmax.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace safetune::cuda::detail {

constexpr unsigned kFullMask = 0xffffffffu;

// The running state of a softmax over a stream of values: the largest value seen and the
// sum of exp(x - max). Two states merge exactly, so every thread can walk its own slice of
// the vocabulary and the block combines them at the end (Milakov & Gimelshein, 2018).
struct SoftmaxState {
  float max = -INFINITY;
  float sum = 0.f;
};

__device__ __forceinline__ void softmax_add(SoftmaxState& s, float x) {
  if (x > s.max) {
    s.sum = s.sum * expf(s.max - x) + 1.f;  // exp(-inf) = 0 on the first value
    s.max = x;
  } else {
    s.sum += expf(x - s.max);
  }
}

__device__ __forceinline__ SoftmaxState softmax_merge(SoftmaxState a, SoftmaxState b) {
  if (a.max == -INFINITY) return b;
  if (b.max == -INFINITY) return a;
  SoftmaxState r;
  r.max = fmaxf(a.max, b.max);
  r.sum = a.sum * expf(a.max - r.max) + b.sum * expf(b.max - r.max);
  return r;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

__device__ __forceinline__ SoftmaxState warp_softmax_merge(SoftmaxState s) {
  for (int o = 16; o > 0; o >>= 1) {
    SoftmaxState other;
    other.max = __shfl_xor_sync(kFullMask, s.max, o);
    other.sum = __shfl_xor_sync(kFullMask, s.sum, o);
    s = softmax_merge(s, other);
  }
  return s;
}

// Every thread of the block gets the merged state. `scratch` holds one state per warp.
__device__ __forceinline__ SoftmaxState block_softmax_merge(SoftmaxState s, SoftmaxState* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = (blockDim.x + 31) / 32;
  s = warp_softmax_merge(s);
  if (lane == 0) scratch[warp] = s;
  __syncthreads();
  SoftmaxState r = lane < n_warps ? scratch[lane] : SoftmaxState{};
  r = warp_softmax_merge(r);
  __syncthreads();  // scratch may be reused right after
  return r;
}

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// Launch errors surface as exceptions naming the kernel (the host API has no other channel).
inline void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace safetune::cuda::detail
