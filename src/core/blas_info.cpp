// The BLAS library as it runs (blas_info.h).
#include "safetune/core/blas_info.h"

#include <dlfcn.h>

#include <cstdlib>

#include "safetune/core/blas_core.h"

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
  }
  if (corename && corename()) b.core = corename();
  if (threads) b.threads = threads();

  const blas::CpuFeatures cpu = blas::read_cpu_features();
  const char* detected = blas::openblas_detected_core(cpu);
  b.detected = detected;
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  b.coretype = coretype ? coretype : "";
  // What start-up would have set had the user set nothing: equal to the environment's
  // value means it came from there (or the user asked for that very core).
  const blas::CoreChoice ours = blas::choose_openblas_core(cpu, detected, nullptr, std::getenv("SAFETUNE_BLAS_CORETYPE"));
  if (!coretype) b.source = "openblas";
  else if (ours.core && b.coretype == ours.core) b.source = "safetune";
  else b.source = "environment";
  return b;
}

std::string describe_blas(const BlasInfo& b) {
  if (b.name == "unknown") return "unknown BLAS (not OpenBLAS)";
  std::string s = b.name + ", core " + b.core;
  if (b.source == "safetune")
    s += " (set by safetune: OpenBLAS's own detection picks " + b.detected +
         " on this CPU; SAFETUNE_BLAS_CORETYPE=keep leaves it)";
  else if (b.source == "environment")
    s += " (OPENBLAS_CORETYPE=" + b.coretype + " from the environment)";
  else
    s += " (OpenBLAS's own detection)";
  if (b.threads > 0) s += ", " + std::to_string(b.threads) + (b.threads == 1 ? " thread" : " threads");
  return s;
}

}  // namespace safetune
