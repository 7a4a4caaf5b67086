// The BLAS library a process computes with, as it runs: which library and version, which
// of OpenBLAS's kernel sets (and why that one: blas_core.h), and its thread count. Read
// at run time through dlsym, so that a build linked against another BLAS still works
// (everything reads "unknown" then). Benchmarks print it beside their numbers and the
// trainer logs it first, since a GEMM rate means little without the kernel behind it.
#pragma once
#include <string>

namespace safetune {

struct BlasInfo {
  std::string name = "unknown";      // "OpenBLAS 0.3.21" (openblas_get_config's first two words)
  std::string core = "unknown";      // the kernel set in use (openblas_get_corename)
  std::string detected;              // OpenBLAS 0.3.21's own pick on this CPU (OPENBLAS_CORETYPE unset)
  std::string coretype;              // OPENBLAS_CORETYPE in this process's environment ("" when unset)
  std::string source;                // "openblas" (its detection), "safetune" (set at start), "environment"
  int threads = 0;                   // OpenBLAS's pool (0: unknown)
};

BlasInfo blas_info();

// One line: "OpenBLAS 0.3.21, core SkylakeX (set by safetune: ...), 2 threads".
std::string describe_blas(const BlasInfo& b);

}  // namespace safetune
