// What this binary was built with: the LibTorch, whether that LibTorch has CUDA, and the
// GPU architectures of the fused-loss CUDA kernels linked in (none in a CPU-only build).
// `safetune --version` prints it and benchmarks record it, so that a number or a bug
// report says which build it came from, and CI can check that a build made where nvcc is
// present did not come out CPU-only. No LibTorch: the values are fixed at configure time.
#pragma once
#include <string>
#include <vector>

namespace safetune {

struct BuildInfo {
  std::string version;                    // safetune's own
  std::string libtorch;                   // "2.11.0"
  std::string cuda;                       // the CUDA toolkit of a CUDA build ("13.0.88"), "" if CPU-only
  std::vector<std::string> kernel_archs;  // {"sm_80", "sm_90"}: the kernels linked into this binary
};

const BuildInfo& build_info();

// "safetune 0.1.0 (LibTorch 2.11.0, CUDA 13.0.88, CUDA loss kernels sm_80 sm_90)".
std::string describe_build();

}  // namespace safetune
