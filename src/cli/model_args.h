// The arguments of the subcommands that run a model (generate, logits, eval): the model
// directory, a PEFT adapter on top, the device; and token-id lists.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "safetune/core/device.h"
#include "safetune/core/error.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"

namespace safetune::cli {

struct ModelArgs {
  std::string model, adapter, device = "cpu";
};

// --model (with its help; required unless said otherwise), --adapter and --device.
inline void add_model_args(CLI::App& app, ModelArgs& a, const std::string& model_help = "HF model directory",
                           bool model_required = true) {
  CLI::Option* m = app.add_option("--model", a.model, model_help);
  if (model_required) m->required();
  app.add_option("--adapter", a.adapter, "PEFT LoRA adapter directory applied on top of --model");
  app.add_option("--device", a.device, "cpu | cuda | cuda:N | auto")->capture_default_str();
}

// The model on its device, with the adapter (if any) applied.
inline model::LoadedModel load_model_args(const ModelArgs& a) {
  model::LoadedModel loaded = model::load_model(a.model, resolve_device(a.device, "--device"));
  if (!a.adapter.empty()) model::load_adapter(a.adapter, *loaded.model);
  return loaded;
}

// "1,2,3" (spaces allowed) -> ids; InputError naming `where` otherwise.
inline std::vector<int64_t> parse_id_list(const std::string& s, const std::string& where) {
  std::vector<int64_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == ',')) ++i;
    if (i == s.size()) break;
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i || (j < s.size() && s[j] != ',' && s[j] != ' '))
      input_error(where, "expected comma-separated non-negative token ids, got '" + s + "'");
    if (j - i > 12) input_error(where, "token id too large in '" + s + "'");
    ids.push_back(std::stoll(s.substr(i, j - i)));
    i = j;
  }
  if (ids.empty()) input_error(where, "no token ids given");
  return ids;
}

inline void check_ids(const std::vector<int64_t>& ids, int64_t vocab, const std::string& where) {
  for (int64_t id : ids)
    if (id < 0 || id >= vocab)
      input_error(where, "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

}  // namespace safetune::cli
