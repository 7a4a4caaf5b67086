#include "safetune/io/model_family.h"

#include <stdexcept>

#include "safetune/core/error.h"

namespace safetune::io {
namespace {

// A row derived from `base`: its identity, then what differs (as HF's modular files derive
// Mistral and Qwen from Llama, Qwen3 from Qwen2, Gemma 3 from Gemma 2).
template <typename Edit>
FamilyTraits derive(const FamilyTraits& base, const char* name, const char* cls, const char* type, Edit edit) {
  FamilyTraits r = base;
  r.name = name;
  r.architecture = cls;
  r.model_type = type;
  edit(r);
  return r;
}

// One row per family, in the order of the Family enum (a row after the last named value
// needs none: it gets the next number); the values are HF's (each family's
// configuration_*.py defaults and modeling_*.py structure).
std::deque<FamilyTraits> make_table() {
  FamilyTraits llama{};
  llama = derive(llama, "llama", "LlamaForCausalLM", "llama", [](FamilyTraits& r) {
    r.bias = BiasRule::kAttention;
    r.mlp_bias_field = true;
    r.activation_field = "hidden_act";
    r.activation = "silu";
    r.rope_theta = 10000.0;
    r.rms_norm_eps = 1e-6;
    r.lora_targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  });
  const FamilyTraits mistral = derive(llama, "mistral", "MistralForCausalLM", "mistral",
                                      [](FamilyTraits& r) {
                                        r.bias = BiasRule::kAttentionQkv;
                                        r.window = WindowRule::kEveryLayer;
                                      });
  const FamilyTraits qwen2 = derive(llama, "qwen2", "Qwen2ForCausalLM", "qwen2", [](FamilyTraits& r) {
    r.bias = BiasRule::kAlwaysQkv;
    r.mlp_bias_field = false;
    r.window = WindowRule::kUpperLayers;
  });
  const FamilyTraits qwen3 = derive(qwen2, "qwen3", "Qwen3ForCausalLM", "qwen3", [](FamilyTraits& r) {
    r.bias = BiasRule::kAttention;
    r.qk_norm = true;
    r.head_dim_default = 128;
    r.must_be_off = {"attention_dropout"};
  });
  const FamilyTraits gemma2 = derive(llama, "gemma2", "Gemma2ForCausalLM", "gemma2",
                                     [](FamilyTraits& r) {
                                       r.mlp_bias_field = false;
                                       r.gemma_layout = true;
                                       r.activation_field = "hidden_activation";
                                       r.activation = "gelu_pytorch_tanh";
                                       r.reads_softcaps = true;
                                       r.attn_softcap = 50.0;
                                       r.final_softcap = 30.0;
                                       r.window = WindowRule::kEvenLayers;
                                       r.window_default = r.init_window = 4096;
                                       r.head_dim_default = 256;
                                       r.must_be_off = {"attention_dropout"};
                                     });
  const FamilyTraits gemma3 = derive(gemma2, "gemma3", "Gemma3ForCausalLM", "gemma3_text",
                                     [](FamilyTraits& r) {
                                       r.qk_norm = true;
                                       r.attn_softcap = r.final_softcap = 0.0;
                                       r.window = WindowRule::kPatternLayers;
                                       r.init_window = 512;
                                       r.rope_theta = 1000000.0;
                                       r.local_rope = true;
                                       r.must_be_off = {"attention_dropout", "use_bidirectional_attention"};
                                     });
  const FamilyTraits phi3 = derive(llama, "phi3", "Phi3ForCausalLM", "phi3", [](FamilyTraits& r) {
    r.bias = BiasRule::kNone;
    r.mlp_bias_field = false;
    r.window = WindowRule::kEveryLayer;
    r.rms_norm_eps = 1e-5;
    r.fused_qkv = r.fused_gate_up = true;
    r.must_be_off = {"attention_dropout", "resid_pdrop", "embd_pdrop"};
    r.lora_targets = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"};
  });
  std::deque<FamilyTraits> rows = {llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3};
  for (size_t i = 0; i < rows.size(); ++i) rows[i].family = static_cast<Family>(i);
  return rows;
}

std::deque<FamilyTraits>& table() {
  static std::deque<FamilyTraits> rows = make_table();
  return rows;
}

}  // namespace

const std::deque<FamilyTraits>& families() { return table(); }

Family add_family(FamilyTraits row) {
  for (const FamilyTraits& t : families())
    if (std::string(row.name) == t.name || std::string(row.architecture) == t.architecture)
      throw InputError(std::string("family '") + row.name + "' (" + row.architecture + ") is already in the table");
  row.family = static_cast<Family>(table().size());
  table().push_back(row);
  return row.family;
}

const FamilyTraits& traits_of(Family f) {
  for (const FamilyTraits& t : families())
    if (t.family == f) return t;
  throw std::logic_error("a family without a row in the families table");
}

const FamilyTraits* family_by_name(const std::string& name) {
  for (const FamilyTraits& t : families())
    if (name == t.name) return &t;
  return nullptr;
}

const FamilyTraits* family_by_hf(const std::string& architecture, const std::string& model_type) {
  for (const FamilyTraits& t : families())
    if (architecture == t.architecture || (architecture.empty() && model_type == t.model_type)) return &t;
  return nullptr;
}

namespace {
std::string joined(const char* FamilyTraits::*field) {
  std::string out;
  for (const FamilyTraits& f : families()) out += (out.empty() ? "" : ", ") + std::string(f.*field);
  return out;
}
}  // namespace

std::string family_names() { return joined(&FamilyTraits::name); }
std::string family_classes() { return joined(&FamilyTraits::architecture); }

}  // namespace safetune::io
