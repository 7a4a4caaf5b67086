// The BLAS library LibTorch computes its CPU GEMMs with, as this process runs: MKL inside
// the torch wheel on x86 (its version from LibTorch's build configuration), OpenBLAS where
// a LibTorch uses it (aarch64 wheels, distribution builds: read through dlsym), and the
// thread count. Benchmarks print it beside their numbers and the trainer logs it first,
// since a GEMM rate means little without the library behind it.
#pragma once
#include <string>

namespace safetune {

struct BlasInfo {
  std::string name = "unknown";  // "MKL 2024.2", "OpenBLAS 0.3.21"
  std::string core;              // OpenBLAS's kernel set ("Haswell"); "" for MKL (it dispatches per call)
  int threads = 0;               // the threads its GEMMs use (0: unknown)
};

BlasInfo blas_info();

// One line: "MKL 2024.2, 2 threads" or "OpenBLAS 0.3.21, core Haswell, 2 threads".
std::string describe_blas(const BlasInfo& b);

}  // namespace safetune
