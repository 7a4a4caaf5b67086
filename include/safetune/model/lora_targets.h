// The HF module names a LoRA adapter may target, in the order a decoder layer holds them:
// the one list the config parser, adapter_config.json's reader and the model's LoRA
// injection check names against. Torch-free, so that the config parser (and its fuzz
// target) need no LibTorch.
#pragma once
#include <string>
#include <vector>

namespace safetune::model {

inline const std::vector<std::string>& lora_target_names() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

// "q_proj, k_proj, ..., down_proj", for messages.
inline std::string lora_target_list() {
  std::string out;
  for (const std::string& n : lora_target_names()) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace safetune::model
