// What this binary was built with (build_info.h). The SAFETUNE_BUILD_* macros come from
// CMake (CMakeLists.txt, cmake/cuda.cmake) on this file alone.
#include "safetune/core/build_info.h"

#include <sstream>

namespace safetune {

const BuildInfo& build_info() {
  static const BuildInfo info = [] {
    BuildInfo b;
    b.version = SAFETUNE_VERSION;
    b.libtorch = SAFETUNE_BUILD_LIBTORCH;
    b.cuda = SAFETUNE_BUILD_CUDA;
    std::istringstream archs(SAFETUNE_BUILD_KERNEL_ARCHS);  // "80,90" or ""
    for (std::string a; std::getline(archs, a, ',');)
      if (!a.empty()) b.kernel_archs.push_back("sm_" + a);
    return b;
  }();
  return info;
}

std::string describe_build() {
  const BuildInfo& b = build_info();
  std::string s = "safetune " + b.version + " (LibTorch " + b.libtorch;
  s += b.cuda.empty() ? ", CPU only" : ", CUDA " + b.cuda;
  if (b.kernel_archs.empty()) {
    s += ", no CUDA loss kernels";
  } else {
    s += ", CUDA loss kernels";
    for (const std::string& a : b.kernel_archs) s += " " + a;
  }
  return s + ")";
}

}  // namespace safetune
