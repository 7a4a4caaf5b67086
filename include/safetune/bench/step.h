// `safetune bench step`: the time of one training step (forward, objective, backward,
// clip, AdamW) of the model and mode a RunConfig describes, on a synthetic batch of
// train.batch_size x data.max_length random tokens, every position trained (or those
// after a prompt), with the objective (constraint and reference) the config names.
//
// MFU = 6 x N_path x tokens/s / G, with G the fp32 GEMM rate of `bench gemm` and
// 6 x N_path the training FLOPs per token:
//   full fine-tuning: 6 x N_matmul + 12 x L x T x (H x head_dim)
//   LoRA:             4 x N_matmul + 6 x N_lora + 12 x L x T x (H x head_dim)
// N_matmul = weights used as matmuls (every linear and the lm_head; tied embeddings
// counted once, as the head); forward 2 FLOPs per weight, the input-gradient backward 2
// more, the weight-gradient backward 2 more where weights train (frozen under LoRA).
// Attention: QK^T and PV over the full T x T square, forward 4 x T x H x head_dim per
// token per layer, backward twice that (PaLM's convention).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "safetune/train/config.h"

namespace safetune::bench {

struct StepResult {
  double step_ms = 0;         // median over the timed steps
  double step_ms_min = 0;
  double forward_ms = 0, backward_ms = 0, optimizer_ms = 0;  // phases of the median step
  double tokens_per_s = 0;    // batch tokens / median step time
  double mfu = 0;
  double peak_rss_mb = 0;     // of the whole process so far
  double peak_mem_mb = 0;     // train.device's peak: the CUDA allocator's over the timed steps
                              // (-1: not readable in this build), the process's RSS on CPU
  double flops_per_token = 0;
  double gemm_gflops = 0;
  int64_t tokens_per_step = 0;
  int64_t trainable = 0;
  int threads = 0;
};

// `gemm_gflops` is called once, after the timed steps, for MFU's denominator.
// `prompt_len` > 0: the first prompt_len tokens of each row are an untrained prompt
// (0: every position after the first is trained). With a safety constraint the batch has
// a post-only context of a 4-token header followed by the response (the whole row after
// the first token when prompt_len is 0), and the constraint is set up as the trainer does
// (reference = cache: the reference's rows for the batch are computed once beforehand and
// served from memory during the timed steps). The model, its trainable parameters, the
// objective and AdamW come from the trainer's own set-up (train/setup.h).
// `trace_path` non-empty: the timed steps run under LibTorch's autograd profiler, which
// writes a Chrome trace of every ATen op there (times then include its overhead).
StepResult bench_step(const train::RunConfig& cfg, int steps, int warmup, const std::function<double()>& gemm_gflops,
                      int64_t prompt_len = 0, const std::string& trace_path = "");

}  // namespace safetune::bench
