// set_compute_threads reaches both pools: LibTorch's OpenMP pool and, when the BLAS is
// OpenBLAS (Debian's default libblas), OpenBLAS's own, which at::set_num_threads alone
// leaves at every core. SingleThreadedBlas restores the count it found.
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <gtest/gtest.h>

#include "safetune/core/threads.h"

namespace {

int (*openblas_threads())() {
  return reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
}

TEST(Threads, SetsBothPools) {
  const int cores = safetune::available_cores();
  ASSERT_GE(cores, 1);
  EXPECT_EQ(safetune::set_compute_threads(1), 1);
  EXPECT_EQ(at::get_num_threads(), 1);
  auto blas = openblas_threads();
  if (blas) EXPECT_EQ(blas(), 1) << "OpenBLAS still runs its GEMMs on more threads than asked";
  EXPECT_EQ(safetune::set_compute_threads(0), cores);  // 0: all cores
  EXPECT_EQ(at::get_num_threads(), cores);
  if (blas) EXPECT_EQ(blas(), cores);
  {
    safetune::SingleThreadedBlas single;
    if (blas) EXPECT_EQ(blas(), 1);
  }
  if (blas) EXPECT_EQ(blas(), cores);
  if (!blas) GTEST_SKIP() << "the BLAS library is not OpenBLAS: only the OpenMP pool was checked";
}

}  // namespace
