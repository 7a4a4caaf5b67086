// Settings that must be in the environment before the libraries start.
//
// Idle OpenMP workers wait passively. LibTorch runs its element-wise ops and (through MKL)
// its GEMMs on an OpenMP pool (the wheel's libgomp). By default an idle libgomp worker
// spins for a while (GOMP_SPINCOUNT 300000) after each parallel region, waiting for the
// next one; on a machine whose cores are shared (other processes, data-parallel ranks,
// the demo's worlds side by side) the spinning workers take cycles from those that have
// work. README's start-up and BLAS section has the measurements. A value the user
// exported (OMP_WAIT_POLICY, or libgomp's GOMP_SPINCOUNT) is left alone;
// SAFETUNE_OMP_WAIT_POLICY=keep turns this off.
//
// libgomp reads OMP_WAIT_POLICY once, in its constructor, before main() runs, so setenv in
// main() is too late. Functions in an executable's .preinit_array run before any shared
// library's constructor, but also before libc has set up `environ` (getenv and setenv do
// not work there yet). So the function below reads the environment block it is handed
// and, when the variable is to be added, execs this same executable again (once, with
// it): at that point no library has been initialised, so the second start costs only the
// dynamic loader's work, not LibTorch's initialisation. The second start finds the
// variable set and goes on. If the exec fails (no /proc), the program just runs with the
// libraries' defaults.
#include <unistd.h>

#include <cstring>

namespace {

bool has_prefix(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

void prepare_environment(int, char** argv, char** envp) {
  if (!argv || !envp) return;
  size_t n = 0;
  for (; envp[n]; ++n) {
    const char* e = envp[n];
    if (has_prefix(e, "OMP_WAIT_POLICY=") || has_prefix(e, "GOMP_SPINCOUNT=") ||
        has_prefix(e, "SAFETUNE_OMP_WAIT_POLICY=keep"))
      return;
  }
  // No allocation here (libc is not initialised): a fixed buffer, skipped if too small.
  static char* env[4096];
  static char passive[] = "OMP_WAIT_POLICY=PASSIVE";
  if (n + 2 > sizeof(env) / sizeof(env[0])) return;
  for (size_t i = 0; i < n; ++i) env[i] = envp[i];
  env[n++] = passive;
  env[n] = nullptr;
  execve("/proc/self/exe", argv, env);  // returns only on failure: carry on as we are
}

// glibc calls these with (argc, argv, envp) before initialising the shared libraries.
__attribute__((section(".preinit_array"), used)) void (*const preinit_environment)(int, char**, char**) =
    &prepare_environment;

}  // namespace
