// HF config.json -> ModelConfig for the decoder families of io/model_family.h.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "safetune/io/model_family.h"

namespace safetune::io {

struct RopeScaling {
  std::string type = "none";  // "none", "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  Family family = Family::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // GQA; = num_attention_heads when absent
  int64_t head_dim = 0;             // = hidden_size / num_attention_heads when absent
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v (and o: o_proj_bias()) biases
  bool mlp_bias = false;
  // Sliding-window attention: a query sees itself and the sliding_window - 1 tokens before
  // it, on the layers layer_slides() names. Which layers: those of config.json's
  // layer_types when it is given (sliding_layers); otherwise the family's rule: Mistral
  // every layer, Qwen2/Qwen3 (when use_sliding_window) index >= max_window_layers,
  // Gemma 2 the even indices, Gemma 3 all but every sliding_window_pattern-th.
  std::optional<int64_t> sliding_window;
  int64_t max_window_layers = 0;
  int64_t sliding_window_pattern = 6;  // gemma3
  std::vector<bool> sliding_layers;    // from layer_types; empty: the family's rule
  // Qwen3, Gemma 3: RMSNorm over each head's queries and keys before RoPE (q_norm, k_norm).
  bool qk_norm = false;
  // Gemma: scores scaled by query_pre_attn_scalar^-1/2 (0: head_dim, i.e. 1/sqrt(head_dim)),
  // and soft-capped as cap * tanh(x / cap) where set: attention scores before the mask,
  // logits after the lm_head.
  double query_pre_attn_scalar = 0;
  std::optional<double> attn_logit_softcapping, final_logit_softcapping;
  // Gemma 3: the RoPE base of the sliding layers (unscaled); global layers use rope_theta
  // and rope_scaling.
  std::optional<double> rope_local_base_freq;
  std::string hidden_act = "silu";  // silu; gelu_pytorch_tanh (Gemma's hidden_activation)
  std::string torch_dtype = "float32";
  std::optional<int64_t> bos_token_id, pad_token_id;
  std::vector<int64_t> eos_token_ids;

  // Whether layer `i` uses the sliding window.
  bool layer_slides(int64_t i) const;
  const FamilyTraits& traits() const { return traits_of(family); }
  std::string arch() const { return traits().name; }                // `init --arch`'s name
  std::string architecture() const { return traits().architecture; }  // the HF class
  // Whether the o_proj has a bias: attention_bias covers it except where the family's
  // biases are q/k/v only (Qwen2, Mistral).
  bool o_proj_bias() const { return attention_bias && traits().bias == BiasRule::kAttention; }
  // The attention scores' scale.
  double attention_scale() const;
};

// Sizes of a decoder, for the random models `safetune init`, the benchmarks and the tests
// make.
struct DecoderSizes {
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0;
};

// The config of a model of family `arch` (a name of family_names(); InputError naming
// `where` otherwise) with these sizes: head_dim = hidden / heads, and what the family's
// row and published configs fix (Qwen2's q/k/v biases, activation, soft-caps, window,
// RoPE bases, tied embeddings); everything else as ModelConfig's defaults.
ModelConfig decoder_config(const std::string& arch, const DecoderSizes& sizes, const std::string& where = "arch");

// Parses config.json text; `where` names the file in errors (InputError).
ModelConfig parse_hf_config(const std::string& json_text, const std::string& where);
ModelConfig load_hf_config(const std::string& path);  // a config.json path or a model dir
// config.json text that HF transformers loads for this config.
std::string hf_config_json(const ModelConfig& cfg);

}  // namespace safetune::io
