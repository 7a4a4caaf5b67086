// tokens.json: the safety-token set S written by `safetune tokens`, read back by the
// trainer and `safetune inspect`, and checked against the model it will constrain.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/hash.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/text/tokenizer.h"

namespace safetune::safety {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormat = "safetune.safety_tokens";
constexpr int kVersion = 1;

at::Tensor SafetyTokens::ids() const {
  std::vector<int64_t> v;
  for (const SafetyToken& t : tokens) v.push_back(t.id);
  return at::tensor(v, at::kLong);
}

at::Tensor SafetyTokens::weights() const {
  std::vector<float> v;
  for (const SafetyToken& t : tokens) v.push_back(static_cast<float>(std::max(t.weight, 0.0)));
  return at::tensor(v, at::kFloat);
}

std::string model_hash(const std::string& dir) {
  const fs::path d(dir);
  Sha256 h;
  h.update_file((d / "config.json").string());
  if (fs::exists(d / "model.safetensors.index.json")) h.update_file((d / "model.safetensors.index.json").string());
  else if (fs::exists(d / "model.safetensors")) h.update_file((d / "model.safetensors").string());
  else input_error(dir, "no model.safetensors or model.safetensors.index.json to hash");
  return h.hex();
}

std::string escape_piece(const std::string& piece) {
  std::string out;
  char buf[8];
  for (unsigned char c : piece) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else out += static_cast<char>(c);  // UTF-8 continuation bytes pass through intact
  }
  return out;
}

std::string to_json(const SafetyTokens& t) {
  json toks = json::array();
  for (const SafetyToken& s : t.tokens)
    toks.push_back({{"id", s.id}, {"piece", s.piece}, {"weight", s.weight}, {"p_ref", s.p_ref}, {"diff", s.diff}});
  const DiscoverOptions& o = t.settings;
  json j = {{"format", kFormat},
            {"version", kVersion},
            {"settings",
             {{"topk", o.topk},
              {"max_resp_len", o.max_resp_len},
              {"mode", o.mode},
              {"temperature", o.temperature},
              {"limit", o.limit},
              {"chat_template", o.chat_template},
              {"z_score_std", "unbiased"}}},
            {"aligned", {{"path", t.aligned_path}, {"hash", t.aligned_hash}}},
            {"probe", {{"path", t.probe_path}, {"hash", t.probe_hash}}},
            {"vocab_size", t.vocab_size},
            {"num_examples", t.num_examples},
            {"num_positions", t.num_positions},
            {"tokens", toks}};
  // Pieces are normally UTF-8; a stray byte is replaced rather than failing the write.
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

void write_safety_tokens(const std::string& path, const SafetyTokens& t) { write_file_atomic(path, to_json(t)); }

namespace {

const json& field(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) input_error(where, std::string("missing field '") + key + "'");
  return obj.at(key);
}

int64_t get_int(const json& obj, const char* key, const std::string& where) {
  const json& v = field(obj, key, where);
  if (!v.is_number_integer()) input_error(where + ": " + key, "must be an integer");
  return v.get<int64_t>();
}

double get_num(const json& obj, const char* key, const std::string& where) {
  const json& v = field(obj, key, where);
  if (!v.is_number()) input_error(where + ": " + key, "must be a number");
  double d = v.get<double>();
  if (!std::isfinite(d)) input_error(where + ": " + key, "must be finite");
  return d;
}

std::string get_str(const json& obj, const char* key, const std::string& where) {
  const json& v = field(obj, key, where);
  if (!v.is_string()) input_error(where + ": " + key, "must be a string");
  return v.get<std::string>();
}

}  // namespace

SafetyTokens read_safety_tokens(const std::string& path) {
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    input_error(path, std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("format") || j["format"] != kFormat)
    input_error(path, "not a tokens.json written by `safetune tokens` (no \"format\": \"" + std::string(kFormat) + "\")");
  if (get_int(j, "version", path) != kVersion)
    input_error(path, "unsupported version " + std::to_string(get_int(j, "version", path)));
  SafetyTokens t;
  const json& s = field(j, "settings", path);
  const std::string sw = path + ": settings";
  t.settings.topk = get_int(s, "topk", sw);
  t.settings.max_resp_len = get_int(s, "max_resp_len", sw);
  t.settings.mode = get_str(s, "mode", sw);
  t.settings.temperature = get_num(s, "temperature", sw);
  t.settings.limit = get_int(s, "limit", sw);
  t.settings.chat_template = get_str(s, "chat_template", sw);
  t.aligned_path = get_str(field(j, "aligned", path), "path", path + ": aligned");
  t.aligned_hash = get_str(field(j, "aligned", path), "hash", path + ": aligned");
  t.probe_path = get_str(field(j, "probe", path), "path", path + ": probe");
  t.probe_hash = get_str(field(j, "probe", path), "hash", path + ": probe");
  t.vocab_size = get_int(j, "vocab_size", path);
  if (t.vocab_size < 1) input_error(path + ": vocab_size", "must be positive");
  t.num_examples = get_int(j, "num_examples", path);
  t.num_positions = get_int(j, "num_positions", path);
  const json& toks = field(j, "tokens", path);
  if (!toks.is_array() || toks.empty()) input_error(path + ": tokens", "must be a non-empty array");
  std::vector<bool> seen(static_cast<size_t>(std::min<int64_t>(t.vocab_size, int64_t(1) << 26)), false);
  bool any_positive = false;
  for (size_t i = 0; i < toks.size(); ++i) {
    const std::string w = path + ": tokens[" + std::to_string(i) + "]";
    SafetyToken st;
    st.id = get_int(toks[i], "id", w);
    if (st.id < 0 || st.id >= t.vocab_size)
      input_error(w, "id " + std::to_string(st.id) + " is outside the vocabulary of " + std::to_string(t.vocab_size));
    if (static_cast<size_t>(st.id) < seen.size()) {
      if (seen[st.id]) input_error(w, "id " + std::to_string(st.id) + " appears twice");
      seen[st.id] = true;
    }
    st.piece = get_str(toks[i], "piece", w);
    st.weight = get_num(toks[i], "weight", w);
    st.p_ref = get_num(toks[i], "p_ref", w);
    st.diff = get_num(toks[i], "diff", w);
    any_positive |= st.weight > 0;
    t.tokens.push_back(std::move(st));
  }
  if (!any_positive) input_error(path + ": tokens", "no token has a positive weight: the constraint would be empty");
  return t;
}

void validate_safety_tokens(const SafetyTokens& t, const std::string& path, int64_t model_vocab,
                            const text::Tokenizer* tok, const std::string& model_dir) {
  if (t.vocab_size != model_vocab)
    input_error(path, "tokens.json was made for vocabulary of " + std::to_string(t.vocab_size) + ", model has " +
                          std::to_string(model_vocab));
  for (const SafetyToken& s : t.tokens) {
    if (s.id < 0 || s.id >= model_vocab)
      input_error(path, "token id " + std::to_string(s.id) + " is outside the model's vocabulary of " +
                            std::to_string(model_vocab));
    if (tok && s.id < tok->vocab_size()) {
      std::string piece = tok->id_to_piece(static_cast<int32_t>(s.id));
      // Compare as written to the file (invalid UTF-8 was replaced there).
      std::string as_written = json(piece).dump(-1, ' ', false, json::error_handler_t::replace);
      std::string ours = json(s.piece).dump(-1, ' ', false, json::error_handler_t::replace);
      if (as_written != ours)
        input_error(path, "token " + std::to_string(s.id) + " is '" + escape_piece(s.piece) +
                              "' in tokens.json but '" + escape_piece(piece) +
                              "' in the model's tokenizer: tokens.json was made for another vocabulary");
    }
  }
  if (!model_dir.empty()) {
    std::string h = model_hash(model_dir);
    if (h != t.aligned_hash)
      input_error(path, "tokens.json was made for the model with hash " + t.aligned_hash.substr(0, 12) + "... (" +
                            t.aligned_path + "), " + model_dir + " has " + h.substr(0, 12) + "...");
  }
}

}  // namespace safetune::safety
