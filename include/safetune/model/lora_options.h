// A LoRA adapter's settings, as PEFT's LoraConfig names them: what the run config's `lora`
// section holds (train/config.h) and what the adapter code takes (model/lora.h: LoraSpec).
// Torch-free, so that the config parser (and its fuzz target) need no LibTorch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace safetune::model {

struct LoraOptions {
  int64_t r = 8;
  double alpha = 32;  // scaling = alpha / r, as PEFT
  double dropout = 0.0;  // on the adapter's input, while training
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};  // lora_targets.h's names
  double scaling() const { return alpha / static_cast<double>(r); }
};

}  // namespace safetune::model
