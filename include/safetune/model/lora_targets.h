// The HF module names a LoRA adapter may target: every family's linear modules (its row of
// io/model_family.h), in the order a decoder layer holds them, each name once. The one
// list the config parser and adapter_config.json's reader check names against; the
// injection then checks them against the model's own modules. Torch-free, so that the
// config parser (and its fuzz target) need no LibTorch.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "safetune/io/model_family.h"

namespace safetune::model {

inline const std::vector<std::string>& lora_target_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const io::FamilyTraits& f : io::families())
      for (const char* n : f.lora_targets)
        if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
    return out;
  }();
  return names;
}

// "q_proj, k_proj, ..., down_proj", for messages.
inline std::string lora_target_list(const std::vector<std::string>& names = lora_target_names()) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace safetune::model
