// Thread-pool settings that must be in the environment before the libraries start.
//
// LibTorch runs its element-wise ops on an OpenMP pool (libgomp) and its GEMMs on
// OpenBLAS, which keeps a pthread pool of its own. By default an idle libgomp worker
// spins for a while (GOMP_SPINCOUNT 300000) after each parallel region, waiting for the
// next one; meanwhile the main thread has entered a GEMM, and OpenBLAS's workers compete
// with the spinning ones for the same cores. On a 2-core machine, a 25M-parameter full
// fine-tuning step spent about a quarter of its CPU time spinning and yielding (perf),
// and took ~4.0 s against ~2.9 s with passive waiting (scripts/bench_train.sh).
//
// libgomp reads OMP_WAIT_POLICY once, in its constructor, before main() runs, so setenv
// in main() is too late. Functions in an executable's .preinit_array run before any
// shared library's constructor, but also before libc has set up `environ` (getenv and
// setenv do not work there yet). So the function below reads the environment block it
// is handed and, when the variable is missing, execs this same executable again with it
// added: at that point no library has been initialised, so the second start costs only
// the dynamic loader's work (~20 ms), not LibTorch's initialisation.
//
// A value the user exported (OMP_WAIT_POLICY, or libgomp's GOMP_SPINCOUNT) is left alone;
// SAFETUNE_OMP_WAIT_POLICY=keep turns this off. If the exec fails (no /proc), the
// program just runs with the libraries' defaults.
#include <unistd.h>

#include <cstring>

namespace {

bool has_prefix(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

void set_thread_wait_policy(int, char** argv, char** envp) {
  if (!argv || !envp) return;
  size_t n = 0;
  for (; envp[n]; ++n) {
    if (has_prefix(envp[n], "OMP_WAIT_POLICY=") || has_prefix(envp[n], "GOMP_SPINCOUNT=") ||
        has_prefix(envp[n], "SAFETUNE_OMP_WAIT_POLICY=keep"))
      return;
  }
  // No allocation here (libc is not initialised): a fixed table, skipped if too small.
  static char* env[4096];
  static char passive[] = "OMP_WAIT_POLICY=PASSIVE";
  if (n + 2 > sizeof(env) / sizeof(env[0])) return;
  for (size_t i = 0; i < n; ++i) env[i] = envp[i];
  env[n] = passive;
  env[n + 1] = nullptr;
  execve("/proc/self/exe", argv, env);  // returns only on failure: carry on as we are
}

// glibc calls these with (argc, argv, envp) before initialising the shared libraries.
__attribute__((section(".preinit_array"), used)) void (*const preinit_thread_wait_policy)(int, char**, char**) =
    &set_thread_wait_policy;

}  // namespace
