// The BLAS library as it runs (blas_info.h).
#include "safetune/core/blas_info.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <dlfcn.h>

#include <regex>

namespace safetune {

BlasInfo blas_info() {
  BlasInfo b;
  auto config = reinterpret_cast<const char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  auto corename = reinterpret_cast<const char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  auto threads = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (config && config()) {
    // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64"
    const std::string c = config();
    const size_t first = c.find(' ');
    b.name = c.substr(0, first == std::string::npos ? first : c.find(' ', first + 1));
    if (corename && corename()) b.core = corename();
    if (threads) b.threads = threads();
    return b;
  }
  // MKL is linked into libtorch_cpu statically and exports its service functions:
  // "Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for ...".
  auto mkl_version = reinterpret_cast<void (*)(char*, int)>(dlsym(RTLD_DEFAULT, "MKL_Get_Version_String"));
  auto mkl_threads = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "mkl_get_max_threads"));
  if (mkl_version) {
    char text[256] = {};
    mkl_version(text, sizeof text - 1);
    std::smatch m;
    const std::string t = text;
    b.name = std::regex_search(t, m, std::regex("Version ([0-9.]+)")) ? "MKL " + m[1].str() : "MKL";
    if (mkl_threads) b.threads = mkl_threads();
    return b;
  }
  // Another BLAS: its name as LibTorch's build configuration gives it.
  std::smatch m;
  const std::string shown = at::show_config();
  if (std::regex_search(shown, m, std::regex("BLAS_INFO=([A-Za-z0-9_]+)"))) b.name = m[1].str();
  b.threads = at::get_num_threads();
  return b;
}

std::string describe_blas(const BlasInfo& b) {
  std::string s = b.name == "unknown" ? "unknown BLAS" : b.name;
  if (!b.core.empty()) s += ", core " + b.core;
  if (b.threads > 0) s += ", " + std::to_string(b.threads) + (b.threads == 1 ? " thread" : " threads");
  return s;
}

}  // namespace safetune
