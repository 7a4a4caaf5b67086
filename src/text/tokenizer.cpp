// load_tokenizer: the tokenizer of an HF model directory, and its bos/eos/pad tokens.
//
// tokenizer.json wins over tokenizer.model (HF's own preference: the fast tokenizer).
// Special tokens come from tokenizer_config.json, then special_tokens_map.json (each
// naming the token as a string or as {"content": ...}), then config.json's *_token_id.
// An explicit null in a tokenizer file means "none" (Qwen has no BOS) and stops the search.
#include <nlohmann/json.hpp>
#include "safetune/core/log.h"

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/json.h"
#include "safetune/text/bpe_tokenizer.h"
#include "safetune/text/sentencepiece.h"
#include "safetune/text/tokenizer.h"

namespace safetune::text {
namespace {

using json = nlohmann::json;

std::optional<json> read_json(const std::string& path) {
  if (!path_exists(path)) return std::nullopt;
  return parse_json(read_file(path), path);
}

// What a tokenizer file says about one special token: absent (keep looking), explicitly
// none, or a piece.
struct Lookup {
  bool found = false;
  std::optional<std::string> piece;
};

Lookup token_in(const std::optional<json>& file, const char* key) {
  Lookup r;
  if (!file || !file->is_object() || !file->contains(key)) return r;
  const json& v = (*file)[key];
  r.found = true;
  if (v.is_string()) r.piece = v.get<std::string>();
  else if (v.is_object() && v.contains("content") && v["content"].is_string()) r.piece = v["content"].get<std::string>();
  return r;
}

std::optional<int32_t> id_in_config(const std::optional<json>& config, const std::string& key) {
  if (!config || !config->is_object() || !config->contains(key)) return std::nullopt;
  const json& v = (*config)[key];
  if (v.is_number_integer()) return v.get<int32_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int32_t>();  // e.g. eos lists
  return std::nullopt;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir) {
  std::string json_path = model_dir + "/tokenizer.json", spm_path = model_dir + "/tokenizer.model";
  std::unique_ptr<Tokenizer> tok;
  if (path_exists(json_path)) tok = load_tokenizer_json(json_path);
  else if (path_exists(spm_path)) tok = load_sentencepiece(spm_path);
  else input_error(model_dir, "no tokenizer.json or tokenizer.model in the model directory");

  std::string tc_path = model_dir + "/tokenizer_config.json", stm_path = model_dir + "/special_tokens_map.json";
  auto tokenizer_config = read_json(tc_path);
  auto special_map = read_json(stm_path);
  auto config = read_json(model_dir + "/config.json");

  struct Slot { const char* name; std::optional<int32_t>* id; };
  for (Slot slot : {Slot{"bos", &tok->bos_id}, Slot{"eos", &tok->eos_id}, Slot{"pad", &tok->pad_id}}) {
    std::string key = std::string(slot.name) + "_token";
    Lookup l = token_in(tokenizer_config, key.c_str());
    std::string from = tc_path;
    if (!l.found) { l = token_in(special_map, key.c_str()); from = stm_path; }
    if (l.found) {
      *slot.id = std::nullopt;
      if (l.piece) {
        if (auto id = tok->piece_to_id(*l.piece)) *slot.id = *id;
        else log::warn("{}: {} '{}' is not in the vocabulary; ignored", from, key, *l.piece);
      }
      continue;
    }
    if (auto id = id_in_config(config, key + "_id")) {
      if (*id >= 0 && *id < tok->vocab_size()) *slot.id = *id;
    }
  }
  return tok;
}

}  // namespace safetune::text
