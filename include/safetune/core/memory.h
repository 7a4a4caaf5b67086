// The process's CPU allocator settings.
#pragma once

namespace safetune {

// A training step (or a forward pass) allocates and frees the same large activation,
// logits and gradient buffers again and again. glibc serves blocks above M_MMAP_THRESHOLD
// with fresh mmap()s, so each step page-faults (and the kernel zeroes) every one of them
// again: ~10% of a small model's forward time. Serving them from the heap and not trimming
// it keeps the freed memory mapped for reuse; it is not returned to the system before
// exit. Called once at start by every command that runs a model; harmless to call twice.
// SAFETUNE_DEFAULT_MALLOC=1 in the environment leaves glibc's defaults (to measure the
// difference).
void keep_freed_memory_for_reuse();

}  // namespace safetune
