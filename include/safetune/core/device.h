// Where safetune computes (train.device, the --device flags) and what it measures there.
//
//   cpu      the default: fp32 compute, bitwise reproducible.
//   cuda     the current CUDA device (cuda:LOCAL_RANK in a multi-process run, so that
//            each rank has its own GPU and data parallelism uses NCCL).
//   cuda:N   that GPU.
//   auto     cuda when LibTorch sees a GPU, else cpu.
//
// Precision policy on CUDA: model.dtype = auto loads the weights in bf16 (and computes in
// bf16; losses and reductions in fp32, see the objective). The trainable parameters (the
// LoRA adapters, or every weight in full fine-tuning) then live in the model in bf16 too,
// but AdamW keeps an fp32 master copy of every non-fp32 parameter, with fp32 moments, and
// writes the rounded master back after each update, so that small updates accumulate
// instead of vanishing in bf16 rounding (train/optimizer.h). The same holds on CPU with an
// explicit model.dtype = bf16, which is how it is tested here. model.dtype = fp32 keeps
// everything in fp32 on either device.
#pragma once
#include <c10/core/Device.h>

#include <string>

#include "safetune/core/device_name.h"

namespace safetune {

// The device `name` stands for on this machine. InputError naming `where` for a bad name,
// for cuda when LibTorch has no CUDA (a CPU-only build, or no GPU visible) and for a GPU
// index beyond the visible ones. `local_rank` >= 0 (a multi-process run) makes a bare
// "cuda" mean cuda:local_rank.
c10::Device resolve_device(const std::string& name, const std::string& where = "train.device", int local_rank = -1);

// Waits for the device's queued work (CUDA); nothing on CPU. For timings.
void synchronize(const c10::Device& device);

// Peak memory in MiB: on CUDA the caching allocator's peak of allocated bytes since the
// last reset_peak_memory (-1 when this build cannot read it); on CPU the process's peak
// resident set size.
double peak_memory_mb(const c10::Device& device);
void reset_peak_memory(const c10::Device& device);

}  // namespace safetune
