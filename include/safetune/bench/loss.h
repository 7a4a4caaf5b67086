// `safetune bench loss`: the fused objective (loss/fused_objective.h) against the same
// objective composed of torch ops on full logits, forward + backward, on random inputs of
// the shape of one training batch after the model: hidden states H [N, d], an lm_head
// W [V, d], targets (every tenth ignored, like prompt positions), the constraint on all N
// rows with a safety-token subset of K columns.
//
// Both paths start from the same inputs. pact: reference logits on S (full and post-only
// context), gate on. kl_full and anchor: the reference's hidden states (H plus noise) and
// its lm_head (W itself, as with LoRA's adapters switched off); the unfused path turns
// them into [N, V] reference logits inside the measured region, as the unfused trainer's
// reference pass does, the fused one consumes them chunk by chunk.
//
// Peak memory: the largest sum of live bytes handed out by LibTorch's allocator (c10's
// CPU allocator, or the CUDA caching allocator) during one forward + backward, over what
// was live when it started, as LibTorch reports each allocation and free to a registered
// memory-reporting hook (c10::MemoryReportingInfoBase, the hook its profiler uses).
// Allocations made on the calling thread are seen (ATen allocates outputs there); not
// BLAS's internal buffers, nor glibc's own overhead. Time: best wall time of the timed
// runs (each also measured for memory), with that run's process CPU time beside it: on a
// loaded machine, CPU time at one thread is the steadier measure of the work.
#pragma once
#include <cstdint>
#include <string>

namespace safetune::bench {

struct LossOptions {
  int64_t tokens = 4096;  // N
  int64_t vocab = 32000;  // V
  int64_t hidden = 1024;  // d
  int64_t subset = 50;    // K
  std::string constraint = "pact";  // a constraint's name (constraint_choices.h)
  std::string device = "cpu";  // cpu | cuda | cuda:N | auto
  std::string dtype = "fp32";  // fp32 | bf16 (of H and W; the losses are computed in fp32)
  int64_t chunk = 0;           // rows per chunk of the fused op (0: its default)
  bool train_weight = false;   // W trainable (full fine-tuning): its gradient is computed too
  int iters = 3, warmup = 1;
  uint64_t seed = 0;
};

struct LossResult {
  double fused_ms = 0, unfused_ms = 0;            // forward + backward, best of iters (wall)
  double fused_cpu_ms = 0, unfused_cpu_ms = 0;    // process CPU time of that run, all threads
  double fused_peak_mb = 0, unfused_peak_mb = 0;  // extra allocated memory, MiB
  double max_abs_diff = 0;  // over the total loss and the gradients of H (and W)
  double fused_loss = 0, unfused_loss = 0;
  int64_t chunk = 0;        // the chunk size used
};

// InputError for bad sizes or names; for device cuda when LibTorch has no CUDA.
LossResult bench_loss(const LossOptions& o);

}  // namespace safetune::bench
