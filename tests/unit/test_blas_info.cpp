// The BLAS report benchmarks and the trainer print (core/blas_info.h): read from the
// library this test runs with, and its one-line form.
#include <gtest/gtest.h>

#include <cstdlib>

#include "safetune/core/blas_info.h"

namespace {

TEST(BlasInfo, ReadsTheRunningLibrary) {
  const safetune::BlasInfo b = safetune::blas_info();
  EXPECT_FALSE(b.detected.empty());
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  EXPECT_EQ(b.coretype, env ? env : "");
  if (!env) {
    EXPECT_EQ(b.source, "openblas");
  } else {
    EXPECT_TRUE(b.source == "environment" || b.source == "safetune") << b.source;
  }
  if (b.name == "unknown") GTEST_SKIP() << "the BLAS library is not OpenBLAS";
  EXPECT_EQ(b.name.rfind("OpenBLAS ", 0), 0u) << b.name;
  EXPECT_EQ(b.name.find(' ', 9), std::string::npos) << "more than name and version: " << b.name;
  EXPECT_NE(b.core, "unknown");
  EXPECT_GE(b.threads, 1);
}

TEST(BlasInfo, OneLine) {
  safetune::BlasInfo b;
  b.name = "OpenBLAS 0.3.21";
  b.core = "SkylakeX";
  b.detected = "Prescott";
  b.coretype = "SkylakeX";
  b.source = "safetune";
  b.threads = 2;
  EXPECT_EQ(safetune::describe_blas(b),
            "OpenBLAS 0.3.21, core SkylakeX (set by safetune: OpenBLAS's own detection picks Prescott on this CPU; "
            "SAFETUNE_BLAS_CORETYPE=keep leaves it), 2 threads");
  b.source = "environment";
  b.coretype = b.core = "Haswell";
  b.threads = 1;
  EXPECT_EQ(safetune::describe_blas(b), "OpenBLAS 0.3.21, core Haswell (OPENBLAS_CORETYPE=Haswell from the environment), 1 thread");
  b.source = "openblas";
  b.coretype = "";
  b.threads = 0;
  EXPECT_EQ(safetune::describe_blas(b), "OpenBLAS 0.3.21, core Haswell (OpenBLAS's own detection)");
  EXPECT_EQ(safetune::describe_blas(safetune::BlasInfo{}), "unknown BLAS (not OpenBLAS)");
}

}  // namespace
