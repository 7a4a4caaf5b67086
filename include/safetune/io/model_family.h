// The decoder families safetune runs, one row each (src/io/model_family.cpp): everything
// that differs between Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 and Phi-3 is a field
// of FamilyTraits, read by the config parser and writer (hf_config.cpp), `safetune init`,
// the decoder (model/transformer.cpp) and the LoRA code. Adding a family is adding a row;
// a family with a new structural feature adds a field here and its use where it acts.
// Torch-free, so that the config fuzz target builds it.
#pragma once
#include <deque>
#include <string>
#include <vector>

namespace safetune::io {

// The families code refers to by name, in the table's order; a row without a name here
// (added after the last, or with add_family()) gets the next number.
enum class Family : int { kLlama, kMistral, kQwen2, kQwen3, kGemma2, kGemma3, kPhi3 };

// Which projections carry biases, and which config field says so.
enum class BiasRule {
  kNone,         // no biases (Phi-3)
  kAttention,    // attention_bias: q, k, v and o (Llama, Qwen3, Gemma)
  kAttentionQkv, // attention_bias: q, k, v only (Mistral as safetune reads it)
  kAlwaysQkv,    // q, k and v always, no field (Qwen2)
};

// Which layers slide when config.json has no layer_types (and a window is set).
enum class WindowRule {
  kNone,            // no window (Llama)
  kEveryLayer,      // sliding_window when not null (Mistral, Phi-3)
  kUpperLayers,     // use_sliding_window: layers >= max_window_layers (Qwen2, Qwen3)
  kEvenLayers,      // always windowed: even layers (Gemma 2)
  kPatternLayers,   // always windowed: all but every sliding_window_pattern-th (Gemma 3)
};

struct FamilyTraits {
  Family family;
  const char* name;          // `safetune init --arch`, tests, logs
  const char* architecture;  // HF class name (config.json "architectures")
  const char* model_type;    // config.json "model_type"
  BiasRule bias;
  bool mlp_bias_field;       // reads mlp_bias (Llama, Mistral)
  bool qk_norm;              // RMSNorm over each head's q and k before RoPE (Qwen3, Gemma 3)
  // Gemma's layout: RMSNorm as x * (1 + w), a norm after attention and around the MLP
  // (four per layer), embeddings times sqrt(hidden), tied embeddings by default.
  bool gemma_layout;
  const char* activation_field;  // hidden_act | hidden_activation (Gemma's MLP reads the latter)
  const char* activation;        // the one activation supported (its HF default)
  bool reads_softcaps;           // attn_/final_logit_softcapping, query_pre_attn_scalar (Gemma)
  double attn_softcap, final_softcap;  // their defaults when absent; 0: off
  WindowRule window;
  long long window_default;  // parse: window when the field is absent (0: none)
  long long init_window;     // `init`: the published configs' window (0: none)
  long long head_dim_default;  // when the field is absent; 0: hidden / heads
  double rope_theta;           // the default RoPE base
  double rms_norm_eps;         // the default RMSNorm epsilon
  bool local_rope;             // a second RoPE base on the sliding layers (Gemma 3)
  bool fused_qkv;              // one qkv_proj [q; k; v] (Phi-3)
  bool fused_gate_up;          // one gate_up_proj [gate; up] (Phi-3)
  // Fields that must be absent, null, 0 or false: what safetune does not implement for
  // this family (dropout it would not apply, bidirectional attention).
  std::vector<const char*> must_be_off;
  std::vector<const char*> lora_targets;  // the linear modules, as PEFT's target_modules names them
};

const std::deque<FamilyTraits>& families();  // a deque: rows stay put when one is added
// Adds a row at start-up (before any config is parsed): a family whose structure the
// table's fields already describe, e.g. a renamed Llama architecture. Its `family` is
// assigned here and returned; a name or class already in the table is an InputError.
Family add_family(FamilyTraits row);
const FamilyTraits& traits_of(Family f);
// By `init --arch` name; null when unknown.
const FamilyTraits* family_by_name(const std::string& name);
// By config.json's first architectures entry, or model_type when that is empty; null when unknown.
const FamilyTraits* family_by_hf(const std::string& architecture, const std::string& model_type);
// "llama, mistral, ..." and "LlamaForCausalLM, ...", for help texts and errors.
std::string family_names();
std::string family_classes();

}  // namespace safetune::io
