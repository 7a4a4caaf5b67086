// libFuzzer target: an HF config.json from a stranger.
//
// parse_hf_config must either reject the text with InputError or return a config that
// the rest of the program can trust; writing that config back (hf_config_json) and
// parsing it again must then succeed and give the same config.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "safetune/core/error.h"
#include "safetune/io/hf_config.h"

using safetune::io::ModelConfig;

namespace {

bool same(const ModelConfig& a, const ModelConfig& b) {
  return a.family == b.family && a.vocab_size == b.vocab_size &&
         a.hidden_size == b.hidden_size && a.intermediate_size == b.intermediate_size &&
         a.num_hidden_layers == b.num_hidden_layers && a.num_attention_heads == b.num_attention_heads &&
         a.num_key_value_heads == b.num_key_value_heads && a.head_dim == b.head_dim &&
         a.max_position_embeddings == b.max_position_embeddings && a.rms_norm_eps == b.rms_norm_eps &&
         a.rope_theta == b.rope_theta && a.rope_scaling.type == b.rope_scaling.type &&
         a.rope_scaling.factor == b.rope_scaling.factor &&
         a.rope_scaling.low_freq_factor == b.rope_scaling.low_freq_factor &&
         a.rope_scaling.high_freq_factor == b.rope_scaling.high_freq_factor &&
         a.rope_scaling.original_max_position_embeddings == b.rope_scaling.original_max_position_embeddings &&
         a.tie_word_embeddings == b.tie_word_embeddings && a.attention_bias == b.attention_bias &&
         a.mlp_bias == b.mlp_bias && a.sliding_window == b.sliding_window &&
         a.max_window_layers == b.max_window_layers && a.hidden_act == b.hidden_act &&
         a.torch_dtype == b.torch_dtype && a.bos_token_id == b.bos_token_id && a.pad_token_id == b.pad_token_id &&
         a.eos_token_ids == b.eos_token_ids;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ModelConfig cfg;
  try {
    cfg = safetune::io::parse_hf_config(std::string(reinterpret_cast<const char*>(data), size), "config.json");
  } catch (const safetune::InputError&) {
    return 0;  // a clean rejection
  }
  const std::string written = safetune::io::hf_config_json(cfg);
  ModelConfig again;
  try {
    again = safetune::io::parse_hf_config(written, "written config.json");
  } catch (const safetune::InputError& e) {
    std::fprintf(stderr, "an accepted config does not read back: %s\n%s\n", e.what(), written.c_str());
    std::abort();
  }
  if (!same(cfg, again)) {
    std::fprintf(stderr, "an accepted config reads back differently:\n%s\n", written.c_str());
    std::abort();
  }
  return 0;
}
