// CPU allocator settings for training loops.
#pragma once

namespace safetune::train {

// A training step allocates and frees the same large activation and gradient buffers
// every step. glibc serves blocks above M_MMAP_THRESHOLD with fresh mmap()s, so each step
// page-faults (and the kernel zeroes) every one of them again. Serving them from the heap
// and not trimming it keeps the freed memory mapped for the next step. Called once,
// before the first step; harmless to call twice. SAFETUNE_DEFAULT_MALLOC=1 in the
// environment leaves glibc's defaults (to measure the difference).
void keep_freed_memory_for_reuse();

}  // namespace safetune::train
