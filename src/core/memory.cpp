// glibc malloc tuning (see memory.h).
#include "safetune/core/memory.h"

#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace safetune {

void keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  if (std::getenv("SAFETUNE_DEFAULT_MALLOC")) return;  // for A/B measurements
  // No mmap()ed blocks at all (M_MMAP_THRESHOLD cannot go above 32 MiB, and a step's
  // largest buffers, e.g. the embedding gradient, are bigger): everything comes from the
  // heap, which is not given back to the system after each step.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}

}  // namespace safetune
