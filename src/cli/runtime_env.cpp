// Settings that must be in the environment before the libraries start.
//
// 1. Idle OpenMP workers wait passively. LibTorch runs its element-wise ops on an OpenMP
// pool (libgomp) and its GEMMs on OpenBLAS, which keeps a pthread pool of its own. By
// default an idle libgomp worker spins for a while (GOMP_SPINCOUNT 300000) after each
// parallel region, waiting for the next one; meanwhile the main thread has entered a GEMM,
// and OpenBLAS's workers compete with the spinning ones for the same cores. On a 2-core
// machine, a 25M-parameter full fine-tuning step spent about a quarter of its CPU time
// spinning and yielding (perf), and took ~4.0 s against ~2.9 s with passive waiting
// (scripts/bench_train.sh). A value the user exported (OMP_WAIT_POLICY, or libgomp's
// GOMP_SPINCOUNT) is left alone; SAFETUNE_OMP_WAIT_POLICY=keep turns this off.
//
// 2. OpenBLAS runs a kernel set the CPU supports. OpenBLAS 0.3.21 picks a generic SSE3
// core ("Prescott") on CPUs its model table does not know, such as an AVX-512 Xeon whose
// cloud VM reports a masked model: every GEMM then runs 5-8x slower. When OpenBLAS's own
// pick would be of an older instruction-set level than the CPU runs, OPENBLAS_CORETYPE
// names the right one (the decision and its reasons: safetune/core/blas_core.h). A user's
// OPENBLAS_CORETYPE is kept; SAFETUNE_BLAS_CORETYPE=keep turns this off.
//
// libgomp reads OMP_WAIT_POLICY once, in its constructor, and OpenBLAS reads
// OPENBLAS_CORETYPE in its own, both before main() runs, so setenv in main() is too late.
// Functions in an executable's .preinit_array run before any shared library's
// constructor, but also before libc has set up `environ` (getenv and setenv do not work
// there yet). So the function below reads the environment block it is handed and, when a
// variable is to be added, execs this same executable again (once, with both): at that
// point no library has been initialised, so the second start costs only the dynamic
// loader's work (~20 ms), not LibTorch's initialisation. The second start finds the
// variables set and goes on. If the exec fails (no /proc), the program just runs with
// the libraries' defaults.
#include <unistd.h>

#include <cstring>

#include "safetune/core/blas_core.h"

namespace {

bool has_prefix(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

// The value of NAME= in `entry`, or nullptr.
const char* value_of(const char* entry, const char* name_eq) {
  return has_prefix(entry, name_eq) ? entry + std::strlen(name_eq) : nullptr;
}

void prepare_environment(int, char** argv, char** envp) {
  if (!argv || !envp) return;
  bool wait_policy_set = false;
  const char* user_coretype = nullptr;
  const char* blas_setting = nullptr;
  size_t n = 0;
  for (; envp[n]; ++n) {
    const char* e = envp[n];
    if (has_prefix(e, "OMP_WAIT_POLICY=") || has_prefix(e, "GOMP_SPINCOUNT=") ||
        has_prefix(e, "SAFETUNE_OMP_WAIT_POLICY=keep"))
      wait_policy_set = true;
    if (const char* v = value_of(e, "OPENBLAS_CORETYPE=")) user_coretype = v;
    if (const char* v = value_of(e, "SAFETUNE_BLAS_CORETYPE=")) blas_setting = v;
  }
  using namespace safetune::blas;
  const CpuFeatures cpu = read_cpu_features();
  const CoreChoice core = choose_openblas_core(cpu, openblas_detected_core(cpu), user_coretype, blas_setting);
  if (wait_policy_set && !core.core) return;

  // No allocation here (libc is not initialised): fixed buffers, skipped if too small.
  static char* env[4096];
  static char passive[] = "OMP_WAIT_POLICY=PASSIVE";
  static char coretype[64] = "OPENBLAS_CORETYPE=";
  if (n + 3 > sizeof(env) / sizeof(env[0])) return;
  for (size_t i = 0; i < n; ++i) env[i] = envp[i];
  if (!wait_policy_set) env[n++] = passive;
  if (core.core) {
    const size_t used = std::strlen(coretype);
    if (used + std::strlen(core.core) >= sizeof(coretype)) return;
    std::memcpy(coretype + used, core.core, std::strlen(core.core) + 1);
    env[n++] = coretype;
  }
  env[n] = nullptr;
  execve("/proc/self/exe", argv, env);  // returns only on failure: carry on as we are
}

// glibc calls these with (argc, argv, envp) before initialising the shared libraries.
__attribute__((section(".preinit_array"), used)) void (*const preinit_environment)(int, char**, char**) =
    &prepare_environment;

}  // namespace
