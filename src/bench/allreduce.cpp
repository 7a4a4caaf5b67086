// bench allreduce (see allreduce.h).
#include "safetune/bench/allreduce.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "safetune/core/error.h"
#include "safetune/dist/data_parallel.h"

namespace safetune::bench {

AllreduceResult bench_allreduce(const AllreduceOptions& o) {
  using Clock = std::chrono::steady_clock;
  if (!(o.mb > 0) || o.mb > 16384) input_error("--mb", "must be in (0, 16384]");
  if (!(o.bucket_mb > 0)) input_error("--bucket-mb", "must be positive");
  if (o.iters < 1 || o.warmup < 0) input_error("--iters", "must be >= 1 (and --warmup >= 0)");
  const dist::Env env = dist::env_from_environment();
  if (env.world_size < 2)
    input_error("bench allreduce", "needs WORLD_SIZE >= 2: run it under scripts/launch.sh -n 2 -- safetune bench allreduce");
  dist::DataParallel dp(env, o.timeout, "cpu", static_cast<int64_t>(o.bucket_mb * (1 << 20)));
  const int64_t n = static_cast<int64_t>(o.mb * (1 << 20) / 4);
  std::vector<at::Tensor> t{at::ones({n}, at::kFloat)};
  std::vector<double> times;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    dp.barrier("bench");
    const auto t0 = Clock::now();
    dp.all_reduce_sum(t);
    if (i >= o.warmup) times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  // Sums of ones, warmup + iters times over: each element is W^(rounds).
  const double expect = std::pow(static_cast<double>(env.world_size), o.warmup + o.iters);
  const double got = t[0][n - 1].item<double>();
  if (std::abs(got - expect) > 1e-3 * expect)
    throw std::runtime_error("bench allreduce: wrong sum " + std::to_string(got) + " (expected " +
                             std::to_string(expect) + ")");
  std::sort(times.begin(), times.end());
  AllreduceResult r;
  r.rank = env.rank;
  r.world_size = env.world_size;
  r.median_s = times[times.size() / 2];
  r.best_s = times.front();
  const double W = env.world_size;
  r.algbw_gbs = 4.0 * n / r.median_s / 1e9;
  r.busbw_gbs = r.algbw_gbs * 2 * (W - 1) / W;
  return r;
}

}  // namespace safetune::bench
