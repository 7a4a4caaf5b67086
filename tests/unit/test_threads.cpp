// set_compute_threads reaches both pools: LibTorch's OpenMP pool and the BLAS's. MKL (the
// torch wheel's, on x86) follows the OpenMP pool; OpenBLAS (aarch64 wheels, distribution
// builds) keeps a pool of its own, which at::set_num_threads alone leaves at every core.
// The BLAS's own count is read from the
// library itself (core/blas_info.h: mkl_get_max_threads, openblas_get_num_threads).
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "safetune/core/blas_info.h"
#include "safetune/core/threads.h"

namespace {

int blas_threads() { return safetune::blas_info().threads; }

TEST(Threads, SetsBothPools) {
  if (blas_threads() == 0) GTEST_SKIP() << "the BLAS library does not report its threads";
  const int cores = safetune::available_cores();
  ASSERT_GE(cores, 1);
  EXPECT_EQ(safetune::set_compute_threads(1), 1);
  EXPECT_EQ(at::get_num_threads(), 1);
  EXPECT_EQ(blas_threads(), 1) << "the BLAS still runs its GEMMs on more threads than asked";
  EXPECT_EQ(safetune::set_compute_threads(0), cores);  // 0: all cores
  EXPECT_EQ(at::get_num_threads(), cores);
  EXPECT_EQ(blas_threads(), cores);
}

}  // namespace
