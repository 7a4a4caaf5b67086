// `safetune bench forward`: a model's forward tokens/s and the GFLOP/s it achieves.
//
// FLOP counting, per forward pass of B sequences of T tokens:
//   2 * P_matmul * B*T                 every weight matrix (q,k,v,o, gate,up,down, lm_head)
//                                      used once per token as a multiply-add
// + 4 * B * T^2 * (H * head_dim) * L   attention scores QK^T and probabilities x V, over
//                                      the full T x T square (as PaLM's MFU counts it)
// Embedding lookups, norms, RoPE, softmax and activations are not counted (they are
// memory-bound work that MFU by convention leaves out).
#pragma once
#include <cstdint>
#include <string>

#include "safetune/io/hf_config.h"

namespace safetune::bench {

struct ForwardOptions {
  std::string model;      // HF model directory, or
  bool init_25m = false;  // a random model of config_25m(arch)
  std::string arch = "llama";
  std::string device = "cpu";
  bool logits = true;     // false: the hidden states only (no lm_head)
  int64_t batch = 8, seq = 256;
  int iters = 5, warmup = 1;
};

struct ForwardResult {
  double seconds = 0;  // best forward
  double tokens = 0;   // batch x seq
  double flops = 0;    // of one forward
  int64_t params = 0, params_matmul = 0;
  std::string dtype;
};

// The benchmark model: hidden 512, 8 layers of 8 heads, MLP 1376, vocab 32000 with tied
// embeddings: 25.3M parameters in the layers, 41.7M in all. Llama-shaped by default; with
// another family (qwen3, gemma2, gemma3, ...) that family's extras at their published
// settings (Gemma 2: both soft-caps, four norms per layer, GeGLU; Gemma 3: q/k norms,
// local layers with their own RoPE base), the same sizes.
io::ModelConfig config_25m(const std::string& arch = "llama");

// InputError for bad options. `device` is resolved here.
ForwardResult bench_forward(const ForwardOptions& o);

}  // namespace safetune::bench
