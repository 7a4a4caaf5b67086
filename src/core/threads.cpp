// Thread counts of the OpenMP and OpenBLAS pools (threads.h). OpenBLAS is found at run
// time (dlsym), so a build linked against another BLAS still works.
#include "safetune/core/threads.h"

#include <ATen/Parallel.h>

#include <dlfcn.h>

#include <algorithm>
#include <thread>

namespace safetune {
namespace {

struct OpenBlas {
  void (*set)(int) = nullptr;
  int (*get)() = nullptr;
};

const OpenBlas& openblas() {
  static const OpenBlas o = [] {
    OpenBlas b;
    b.set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    b.get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    if (!b.set || !b.get) b = OpenBlas{};
    return b;
  }();
  return o;
}

}  // namespace

int available_cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

int set_compute_threads(int n) {
  if (n <= 0) n = available_cores();
  at::set_num_threads(n);
  if (openblas().set) openblas().set(n);
  return n;
}

}  // namespace safetune
