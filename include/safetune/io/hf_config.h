// HF config.json -> ModelConfig for the decoder families safetune runs:
// LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace safetune::io {

struct RopeScaling {
  std::string type = "none";  // "none", "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string arch = "llama";                      // llama | mistral | qwen2
  std::string architecture = "LlamaForCausalLM";   // HF class name
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
  bool attention_bias = false;  // q/k/v (and o for Llama's flag) bias; Qwen2: q/k/v only
  bool mlp_bias = false;
  // Sliding-window attention (Mistral; Qwen2 when use_sliding_window): honoured by the
  // attention mask for layers at index >= max_window_layers (0 for Mistral).
  std::optional<int64_t> sliding_window;
  int64_t max_window_layers = 0;
  std::string hidden_act = "silu";
  std::string torch_dtype = "float32";
  std::optional<int64_t> bos_token_id, pad_token_id;
  std::vector<int64_t> eos_token_ids;

  // Whether layer `i` uses the sliding window.
  bool layer_slides(int64_t i) const { return sliding_window && i >= max_window_layers; }
  // Whether the o_proj has a bias (Llama's attention_bias covers o_proj; Qwen2's does not).
  bool o_proj_bias() const { return attention_bias && arch == "llama"; }
};

// Sizes of a decoder, for the random models `safetune init`, the benchmarks and the tests
// make.
struct DecoderSizes {
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0;
};

// The config of a model of family `arch` (llama | qwen2 | mistral; InputError naming
// `where` otherwise) with these sizes: its HF class name, head_dim = hidden / heads, and
// Qwen2's q/k/v biases; everything else as ModelConfig's defaults.
ModelConfig decoder_config(const std::string& arch, const DecoderSizes& sizes, const std::string& where = "arch");

// Parses config.json text; `where` names the file in errors (InputError).
ModelConfig parse_hf_config(const std::string& json_text, const std::string& where);
ModelConfig load_hf_config(const std::string& path);  // a config.json path or a model dir
// config.json text that HF transformers loads for this config.
std::string hf_config_json(const ModelConfig& cfg);

}  // namespace safetune::io
