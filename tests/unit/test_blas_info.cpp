// The BLAS report benchmarks and the trainer print (core/blas_info.h): read from the
// library this test runs with, and its one-line form.
#include <gtest/gtest.h>

#include <ATen/Version.h>

#include "safetune/core/blas_info.h"

namespace {

TEST(BlasInfo, ReadsTheRunningLibrary) {
  const safetune::BlasInfo b = safetune::blas_info();
  // LibTorch's own account of its BLAS, against which the report is checked.
  const std::string shown = at::show_config();
  if (shown.find("BLAS_INFO=mkl") != std::string::npos) {
    EXPECT_EQ(b.name.rfind("MKL 20", 0), 0u) << b.name;
    EXPECT_TRUE(b.core.empty());
  } else if (shown.find("BLAS_INFO=open") != std::string::npos) {
    EXPECT_EQ(b.name.rfind("OpenBLAS ", 0), 0u) << b.name;
    EXPECT_FALSE(b.core.empty());
  } else {
    GTEST_SKIP() << "LibTorch's BLAS is neither MKL nor OpenBLAS";
  }
  EXPECT_GE(b.threads, 1);
}

TEST(BlasInfo, OneLine) {
  safetune::BlasInfo b;
  b.name = "OpenBLAS 0.3.21";
  b.core = "SkylakeX";
  b.threads = 2;
  EXPECT_EQ(safetune::describe_blas(b), "OpenBLAS 0.3.21, core SkylakeX, 2 threads");
  b = {};
  b.name = "MKL 2024.2";
  b.threads = 1;
  EXPECT_EQ(safetune::describe_blas(b), "MKL 2024.2, 1 thread");
  EXPECT_EQ(safetune::describe_blas(safetune::BlasInfo{}), "unknown BLAS");
}

}  // namespace
