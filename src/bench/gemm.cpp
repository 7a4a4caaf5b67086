// bench gemm (see gemm.h).
#include "safetune/bench/gemm.h"

#include <ATen/ATen.h>

namespace safetune::bench {

double gemm_gflops(int64_t n, int iters, const c10::Device& dev) {
  at::NoGradGuard no_grad;
  auto opts = at::TensorOptions().dtype(at::kFloat).device(dev);
  at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts), c = at::empty({n, n}, opts);
  double t = best_time(2, iters, dev, [&] { at::mm_out(c, a, b); });
  return 2.0 * n * n * n / t / 1e9;
}

}  // namespace safetune::bench
