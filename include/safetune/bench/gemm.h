// `safetune bench gemm`: the fp32 square-matmul rate, the machine's practical peak and the
// denominator of every MFU safetune reports; and the timing helper the benchmarks share.
#pragma once
#include <c10/core/Device.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "safetune/core/device.h"

namespace safetune::bench {

// Best-of-`iters` wall time of fn() in seconds, after `warmup` untimed runs; the device's
// queued work is waited for around each run (CUDA runs asynchronously).
template <class F>
double best_time(int warmup, int iters, const c10::Device& dev, F&& fn) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) fn();
  synchronize(dev);
  double best = 1e300;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = Clock::now();
    fn();
    synchronize(dev);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// GFLOP/s of an fp32 n x n by n x n matmul on `dev`, best of `iters` (after 2 untimed).
double gemm_gflops(int64_t n, int iters, const c10::Device& dev);

}  // namespace safetune::bench
