#include "safetune/io/hf_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/json_depth.h"

namespace safetune::io {
using nlohmann::json;

namespace {

// Reads an integer field within [lo, hi]; `dflt` when absent or null (required if no default).
int64_t get_int(const json& j, const char* key, const std::string& where, int64_t lo, int64_t hi,
                std::optional<int64_t> dflt = std::nullopt) {
  if (!j.contains(key) || j[key].is_null()) {
    if (!dflt) input_error(where, std::string("missing field '") + key + "'");
    return *dflt;
  }
  const json& v = j[key];
  if (!v.is_number_integer()) input_error(where, std::string("field '") + key + "' must be an integer");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    input_error(where, std::string("field '") + key + "' = " + std::to_string(x) + " is outside [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

double get_double(const json& j, const char* key, const std::string& where, double lo, double hi, double dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  if (!j[key].is_number()) input_error(where, std::string("field '") + key + "' must be a number");
  const double x = j[key].get<double>();
  if (!(x > lo && x <= hi))
    input_error(where, std::string("field '") + key + "' = " + std::to_string(x) + " is outside (" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

bool get_bool(const json& j, const char* key, const std::string& where, bool dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  if (!j[key].is_boolean()) input_error(where, std::string("field '") + key + "' must be true or false");
  return j[key].get<bool>();
}

// An optional positive number: nullopt when absent or null (HF's "switched off").
std::optional<double> get_optional_positive(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return get_double(j, key, where, 0.0, 1e12, 0.0);
}

// HF's layer_types ("sliding_attention" | "full_attention" per layer), when present.
std::vector<bool> parse_layer_types(const json& j, int64_t layers, const std::string& where) {
  std::vector<bool> out;
  if (!j.contains("layer_types") || j["layer_types"].is_null()) return out;
  const json& t = j["layer_types"];
  if (!t.is_array() || static_cast<int64_t>(t.size()) != layers)
    input_error(where, "field 'layer_types' must be a list of num_hidden_layers (" + std::to_string(layers) +
                           ") entries");
  for (const json& e : t) {
    const std::string v = e.is_string() ? e.get<std::string>() : e.dump();
    if (v != "sliding_attention" && v != "full_attention")
      input_error(where, "field 'layer_types' has '" + v + "' (supported: sliding_attention, full_attention)");
    out.push_back(v == "sliding_attention");
  }
  return out;
}

// The family's fields that must be off (must_be_off): non-default values would change
// the model in ways not implemented, so they are refused by name rather than ignored.
void refuse_unsupported(const json& j, const FamilyTraits& f, const std::string& where) {
  for (const char* key : f.must_be_off) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const json& v = j[key];
    const bool off = v.is_boolean() ? !v.get<bool>() : v.is_number() && v.get<double>() == 0.0;
    if (!off)
      input_error(where, std::string("field '") + key + "' = " + v.dump() + " is not supported for " + f.architecture +
                             " (expected " + (v.is_boolean() ? "false" : "0") + ")");
  }
}

// A RoPE scaling object ({rope_type or type, factor, ...}); "default" or no type is none.
RopeScaling parse_scaling_object(const json& s, const std::string& at) {
  RopeScaling r;
  if (!s.is_object()) input_error(at, "must be an object or null");
  std::string type;
  for (const char* key : {"rope_type", "type"})
    if (s.contains(key) && s[key].is_string()) type = s[key].get<std::string>();
  if (type == "default" || type.empty()) return r;
  if (type != "linear" && type != "llama3")
    input_error(at, "unsupported rope scaling type '" + type + "' (supported: linear, llama3)");
  r.type = type;
  r.factor = get_double(s, "factor", at, 0.0, 1e6, 0.0);
  if (r.factor <= 0.0) input_error(at, "missing positive field 'factor'");
  if (type == "llama3") {
    r.low_freq_factor = get_double(s, "low_freq_factor", at, 0.0, 1e6, 1.0);
    r.high_freq_factor = get_double(s, "high_freq_factor", at, 0.0, 1e6, 4.0);
    r.original_max_position_embeddings = get_int(s, "original_max_position_embeddings", at, 1, 1 << 24, 8192);
    if (r.high_freq_factor <= r.low_freq_factor) input_error(at, "high_freq_factor must exceed low_freq_factor");
  }
  return r;
}

// One transformers 5 RoPE parameter object: {rope_type, rope_theta, factor, ...}; its
// theta (else `dflt_theta`) and scaling. A partial rotary factor is refused by name.
void parse_rope_object(const json& o, const std::string& at, double dflt_theta, double& theta, RopeScaling& scaling) {
  if (!o.is_object()) input_error(at, "must be an object");
  if (get_double(o, "partial_rotary_factor", at, 0.0, 1.0, 1.0) != 1.0)
    input_error(at, "field 'partial_rotary_factor' is not supported (expected 1)");
  theta = get_double(o, "rope_theta", at, 0.0, 1e12, dflt_theta);
  scaling = parse_scaling_object(o, at);
}

// RoPE base and scaling: transformers 5 writes rope_parameters (Gemma 3: one object per
// layer type, full_attention and sliding_attention, the latter giving the local base);
// earlier versions rope_theta + rope_scaling (+ Gemma 3's rope_local_base_freq, read with
// the family fields). rope_parameters wins where both are present, as in transformers 5.
void read_rope(const json& j, const std::string& where, ModelConfig& c) {
  const double dflt_theta = get_double(j, "rope_theta", where, 0.0, 1e12, c.traits().rope_theta);
  if (!j.contains("rope_parameters") || j["rope_parameters"].is_null()) {
    c.rope_theta = dflt_theta;
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
      c.rope_scaling = parse_scaling_object(j["rope_scaling"], where + ": rope_scaling");
    return;
  }
  const json& p = j["rope_parameters"];
  const std::string at = where + ": rope_parameters";
  if (!p.is_object()) input_error(at, "must be an object or null");
  if (!p.contains("full_attention") && !p.contains("sliding_attention")) {
    parse_rope_object(p, at, dflt_theta, c.rope_theta, c.rope_scaling);
    return;
  }
  if (!c.traits().local_rope)
    input_error(at, std::string("RoPE parameters per layer type are not supported for ") + c.traits().architecture);
  for (const auto& [key, value] : p.items())
    if (key != "full_attention" && key != "sliding_attention")
      input_error(at, "unknown layer type '" + key + "' (supported: full_attention, sliding_attention)");
  if (p.contains("full_attention"))
    parse_rope_object(p["full_attention"], at + ".full_attention", dflt_theta, c.rope_theta, c.rope_scaling);
  if (p.contains("sliding_attention")) {
    double local = 10000.0;
    RopeScaling local_scaling;
    parse_rope_object(p["sliding_attention"], at + ".sliding_attention", c.rope_local_base_freq.value_or(10000.0),
                      local, local_scaling);
    if (local_scaling.type != "none")
      input_error(at + ".sliding_attention",
                  "rope scaling '" + local_scaling.type + "' on the sliding layers is not supported (expected default)");
    c.rope_local_base_freq = local;
  }
}

// head_dim: some families' configs default it (Qwen3 128, Gemma 256) when the field is
// absent (not hidden / heads); a null falls back to hidden / heads as in their attention.
int64_t read_head_dim(const json& j, const std::string& where, const ModelConfig& c) {
  if (!j.contains("head_dim") && c.traits().head_dim_default > 0) return c.traits().head_dim_default;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) return get_int(j, "head_dim", where, 1, 1 << 12);
  if (c.hidden_size % c.num_attention_heads != 0)
    input_error(where, "hidden_size must be a multiple of num_attention_heads when head_dim is absent");
  return c.hidden_size / c.num_attention_heads;
}

// The MLP's activation, from the family's field (Gemma's MLP reads hidden_activation;
// hidden_act, which the published Gemma 2 configs also write, is not read by it).
void read_activation(const json& j, const std::string& where, const FamilyTraits& f, ModelConfig& c) {
  const std::string field = f.activation_field;
  c.hidden_act = f.activation;
  if (j.contains(field) && !j[field].is_null()) {
    if (!j[field].is_string()) input_error(where, "field '" + field + "' must be a string");
    c.hidden_act = j[field].get<std::string>();
  }
  if (c.hidden_act != f.activation)
    input_error(where, "unsupported " + field + " '" + c.hidden_act + "' (expected " + f.activation + ")");
}

// The window and the layers it applies to, by the family's WindowRule.
void read_window(const json& j, const std::string& where, const FamilyTraits& f, ModelConfig& c) {
  const bool given = j.contains("sliding_window") && !j["sliding_window"].is_null();
  switch (f.window) {
    case WindowRule::kNone:
      return;
    case WindowRule::kEveryLayer:
      if (given) c.sliding_window = get_int(j, "sliding_window", where, 1, 1 << 24);
      return;
    case WindowRule::kUpperLayers:
      // HF: sliding_window = sliding_window if use_sliding_window else None, and a null
      // sliding_window means no window (Qwen3's published configs write null).
      if (get_bool(j, "use_sliding_window", where, false) && given) {
        c.sliding_window = get_int(j, "sliding_window", where, 1, 1 << 24);
        c.max_window_layers = get_int(j, "max_window_layers", where, 0, 4096, 0);
      }
      return;
    case WindowRule::kEvenLayers:
    case WindowRule::kPatternLayers:
      if (j.contains("sliding_window") && !given)
        input_error(where, std::string("field 'sliding_window' is null; ") + f.architecture +
                               "'s local layers need a window size");
      c.sliding_window = get_int(j, "sliding_window", where, 1, 1 << 24, f.window_default);
      if (f.window == WindowRule::kPatternLayers)
        c.sliding_window_pattern = get_int(j, "sliding_window_pattern", where, 1, 4096, 6);
      return;
  }
}

std::optional<double> on_if_positive(double v) { return v > 0 ? std::optional<double>(v) : std::nullopt; }

// The fields each family reads its own way (its row says which): activation, biases,
// q/k norms, windows, Gemma's scalars, soft-caps and local RoPE base.
void read_family_fields(const json& j, const std::string& where, ModelConfig& c) {
  const FamilyTraits& f = c.traits();
  read_activation(j, where, f, c);
  c.attention_bias = f.bias == BiasRule::kAlwaysQkv ||
                     (f.bias != BiasRule::kNone && get_bool(j, "attention_bias", where, false));
  if (f.mlp_bias_field) c.mlp_bias = get_bool(j, "mlp_bias", where, false);
  c.qk_norm = f.qk_norm;
  read_window(j, where, f, c);
  if (f.reads_softcaps) {
    c.query_pre_attn_scalar = get_double(j, "query_pre_attn_scalar", where, 0.0, 1e9, 256.0);  // HF's default
    // Absent: the family's default (Gemma 2: 50 and 30, Gemma 3: off); a null is off.
    c.attn_logit_softcapping = j.contains("attn_logit_softcapping")
                                   ? get_optional_positive(j, "attn_logit_softcapping", where)
                                   : on_if_positive(f.attn_softcap);
    c.final_logit_softcapping = j.contains("final_logit_softcapping")
                                    ? get_optional_positive(j, "final_logit_softcapping", where)
                                    : on_if_positive(f.final_softcap);
  }
  if (f.local_rope) c.rope_local_base_freq = get_double(j, "rope_local_base_freq", where, 0.0, 1e12, 10000.0);
}

// bos / pad / eos ids (eos may be a list), each below vocab_size; null means none.
void read_special_tokens(const json& j, const std::string& where, ModelConfig& c) {
  const int64_t max_id = c.vocab_size - 1;
  if (j.contains("bos_token_id") && !j["bos_token_id"].is_null()) c.bos_token_id = get_int(j, "bos_token_id", where, 0, max_id);
  if (j.contains("pad_token_id") && !j["pad_token_id"].is_null()) c.pad_token_id = get_int(j, "pad_token_id", where, 0, max_id);
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const json& e = j["eos_token_id"];
    if (e.is_array()) {
      for (const json& id : e) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > max_id)
          input_error(where, "eos_token_id entries must be token ids below vocab_size");
        c.eos_token_ids.push_back(id.get<int64_t>());
      }
    } else {
      c.eos_token_ids.push_back(get_int(j, "eos_token_id", where, 0, max_id));
    }
  }
}

}  // namespace

ModelConfig decoder_config(const std::string& arch, const DecoderSizes& sizes, const std::string& where) {
  const FamilyTraits* f = family_by_name(arch);
  if (!f) input_error(where, "unsupported architecture '" + arch + "' (supported: " + family_names() + ")");
  ModelConfig c;
  c.family = f->family;
  c.vocab_size = sizes.vocab;
  c.hidden_size = sizes.hidden;
  c.intermediate_size = sizes.intermediate;
  c.num_hidden_layers = sizes.layers;
  c.num_attention_heads = sizes.heads;
  c.num_key_value_heads = sizes.kv_heads;
  c.head_dim = sizes.heads > 0 ? sizes.hidden / sizes.heads : 0;
  c.rms_norm_eps = f->rms_norm_eps;
  c.rope_theta = f->rope_theta;
  c.hidden_act = f->activation;
  c.attention_bias = f->bias == BiasRule::kAlwaysQkv;
  c.qk_norm = f->qk_norm;
  c.tie_word_embeddings = f->gemma_layout;
  // As the published gemma-2-*-it and gemma-3-1b-it configs: the query scale of head_dim,
  // their windows and soft-caps.
  if (f->reads_softcaps) c.query_pre_attn_scalar = static_cast<double>(c.head_dim);
  if (f->init_window > 0) c.sliding_window = f->init_window;
  c.attn_logit_softcapping = on_if_positive(f->attn_softcap);
  c.final_logit_softcapping = on_if_positive(f->final_softcap);
  if (f->local_rope) c.rope_local_base_freq = 10000.0;
  return c;
}

bool ModelConfig::layer_slides(int64_t i) const {
  if (!sliding_window) return false;
  if (!sliding_layers.empty()) return i >= 0 && i < static_cast<int64_t>(sliding_layers.size()) && sliding_layers[i];
  switch (traits().window) {
    case WindowRule::kNone: return false;
    case WindowRule::kEveryLayer: return true;
    case WindowRule::kUpperLayers: return i >= max_window_layers;
    case WindowRule::kEvenLayers: return i % 2 == 0;
    case WindowRule::kPatternLayers: return (i + 1) % sliding_window_pattern != 0;
  }
  return false;
}

double ModelConfig::attention_scale() const {
  return 1.0 / std::sqrt(query_pre_attn_scalar > 0 ? query_pre_attn_scalar : static_cast<double>(head_dim));
}

ModelConfig parse_hf_config(const std::string& text, const std::string& where) {
  if (find_json_too_deep(text) != std::string::npos)
    input_error(where, "JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    input_error(where, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) input_error(where, "must be a JSON object");

  ModelConfig c;
  std::string architecture, model_type;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    architecture = j["architectures"][0].get<std::string>();
  if (j.contains("model_type") && j["model_type"].is_string()) model_type = j["model_type"].get<std::string>();
  const FamilyTraits* family = family_by_hf(architecture, model_type);
  if (!family)
    input_error(where, "unsupported architecture '" + (architecture.empty() ? model_type : architecture) +
                           "' (supported: " + family_classes() + ")");
  c.family = family->family;
  refuse_unsupported(j, *family, where);

  c.vocab_size = get_int(j, "vocab_size", where, 1, 1 << 22);
  c.hidden_size = get_int(j, "hidden_size", where, 1, 1 << 16);
  c.intermediate_size = get_int(j, "intermediate_size", where, 1, 1 << 20);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", where, 1, 4096);
  c.num_attention_heads = get_int(j, "num_attention_heads", where, 1, 4096);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", where, 1, 4096, c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    input_error(where, "num_attention_heads (" + std::to_string(c.num_attention_heads) +
                           ") must be a multiple of num_key_value_heads (" + std::to_string(c.num_key_value_heads) + ")");
  c.head_dim = read_head_dim(j, where, c);
  if (c.head_dim % 2 != 0) input_error(where, "head_dim must be even for rotary embeddings");
  c.max_position_embeddings = get_int(j, "max_position_embeddings", where, 1, 1 << 24, 2048);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", where, 0.0, 1.0, family->rms_norm_eps);
  // HF's Gemma configs default to tied embeddings (PretrainedConfig's default is true too;
  // the Llama-family configs here write the field).
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where, family->gemma_layout);

  // transformers 5 writes "dtype", earlier versions "torch_dtype".
  for (const char* key : {"torch_dtype", "dtype"})
    if (j.contains(key) && j[key].is_string()) c.torch_dtype = j[key].get<std::string>();
  read_family_fields(j, where, c);
  read_rope(j, where, c);  // after the family fields: Gemma 3's local base may come from rope_parameters
  c.sliding_layers = parse_layer_types(j, c.num_hidden_layers, where);

  read_special_tokens(j, where, c);
  return c;
}

ModelConfig load_hf_config(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "config.json").string();
  return parse_hf_config(read_file(file), file);
}

namespace {

// The fields the family's config class has, by its row: what transformers reads back.
void write_family_fields(const ModelConfig& c, json& j) {
  const FamilyTraits& f = c.traits();
  auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  const json window = c.sliding_window ? json(*c.sliding_window) : json(nullptr);
  j[f.activation_field] = c.hidden_act;
  if (f.bias == BiasRule::kAttention || f.bias == BiasRule::kAttentionQkv) j["attention_bias"] = c.attention_bias;
  if (f.mlp_bias_field) j["mlp_bias"] = c.mlp_bias;
  switch (f.window) {
    case WindowRule::kNone: break;
    case WindowRule::kUpperLayers:
      j["use_sliding_window"] = c.sliding_window.has_value();
      j["max_window_layers"] = c.max_window_layers;
      [[fallthrough]];
    case WindowRule::kEveryLayer:
    case WindowRule::kEvenLayers:
      j["sliding_window"] = window;
      break;
    case WindowRule::kPatternLayers:
      j["sliding_window"] = window;
      j["sliding_window_pattern"] = c.sliding_window_pattern;
      break;
  }
  if (f.reads_softcaps) {
    j["query_pre_attn_scalar"] = c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : double(c.head_dim);
    j["attn_logit_softcapping"] = opt(c.attn_logit_softcapping);
    j["final_logit_softcapping"] = opt(c.final_logit_softcapping);
  }
  if (f.local_rope) j["rope_local_base_freq"] = opt(c.rope_local_base_freq);
  // layer_types as recent transformers write it; older versions derive the same pattern.
  if (!c.sliding_layers.empty() || f.gemma_layout) {
    json types = json::array();
    for (int64_t i = 0; i < c.num_hidden_layers; ++i)
      types.push_back(c.layer_slides(i) ? "sliding_attention" : "full_attention");
    j["layer_types"] = types;
  }
}

}  // namespace

std::string hf_config_json(const ModelConfig& c) {
  json j;
  j["architectures"] = {c.traits().architecture};
  j["model_type"] = c.traits().model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == "none") {
    j["rope_scaling"] = nullptr;
  } else {
    json r = {{"rope_type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
    if (c.rope_scaling.type == "llama3") {
      r["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      r["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      r["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = r;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  write_family_fields(c, j);
  j["bos_token_id"] = c.bos_token_id ? json(*c.bos_token_id) : json(nullptr);
  j["pad_token_id"] = c.pad_token_id ? json(*c.pad_token_id) : json(nullptr);
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids;
  else j["eos_token_id"] = nullptr;
  return j.dump(2) + "\n";
}

}  // namespace safetune::io
