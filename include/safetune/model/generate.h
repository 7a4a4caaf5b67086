// Autoregressive generation: batched prompts of different lengths (left-padded, with a
// mask), a preallocated KV cache, greedy or temperature / top-p sampling from a seeded
// generator, per-row stop on EOS.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace safetune::model {

class Transformer;  // transformer.h

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  double temperature = 0.0;  // <= 0: greedy (argmax)
  double top_p = 1.0;        // nucleus sampling mass, (0, 1]
  uint64_t seed = 0;         // sampling is reproducible for a seed, on any device
  std::vector<int64_t> eos_ids;  // a row stops after emitting one (the EOS is kept)
  int64_t pad_id = 0;            // filler for left padding and finished rows
  bool use_cache = true;         // false: recompute the whole sequence every step
};

// The options of one decode from what a user sets (tokens, temperature, top-p, seed) and
// what the model's configuration and tokenizer say (EOS ids, pad id): the one place
// GenerateOptions are filled, for `safetune generate` and eval alike.
GenerateOptions generate_options(int64_t max_new_tokens, double temperature, double top_p, uint64_t seed,
                                 std::vector<int64_t> eos_ids, int64_t pad_id);

// Returns the new ids of each prompt (at most max_new_tokens each, ending at EOS if one was
// produced). Prompts must be non-empty.
std::vector<std::vector<int64_t>> generate(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerateOptions& opts);

// Picks the next token of each row of logits [B,V] (fp32, CPU): argmax when temperature
// <= 0, else a draw from softmax(logits / temperature) restricted to the top-p nucleus.
at::Tensor sample_next(const at::Tensor& logits, double temperature, double top_p, at::Generator& gen);

}  // namespace safetune::model
