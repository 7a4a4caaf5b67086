// LoRA adapters on the Transformer's Linear modules, saved and loaded the way PEFT does.
//
// A targeted Linear computes y = x W^T + b + scaling * dropout(x) A^T B^T with
// A [r, in] and B [out, r], scaling = alpha / r. Initialisation is PEFT's default:
// A as nn.Linear's default (kaiming_uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))),
// B zeros, so a fresh adapter leaves the model's function unchanged.
//
// On disk an adapter is a directory with
//   adapter_config.json          PEFT's LoraConfig (peft_type "LORA", r, lora_alpha, ...)
//   adapter_model.safetensors    "base_model.model.<module>.lora_A.weight" / ".lora_B.weight"
// e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight, so that
// peft.PeftModel.from_pretrained reads what we write and we read what it writes.
//
// The adapter tensors live in Linear::lora_A / lora_B and are not registered as module
// parameters: named_parameters() and save_model() keep seeing the base model only.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "safetune/model/lora_options.h"
#include "safetune/model/lora_targets.h"

namespace safetune::model {

class Linear;  // transformer.h
class Transformer;  // transformer.h

// An adapter's options and, for one read from disk, the base model it names.
struct LoraSpec : LoraOptions {
  std::string base_model;  // base_model_name_or_path as read from adapter_config.json ("" if absent)
};

// Targeted Linears in model order with their module paths ("model.layers.0.self_attn.q_proj").
// InputError (naming `where`) for a name that is not a targetable module or that matches
// nothing in the model, and for a rank larger than a targeted layer's smaller dimension.
std::vector<std::pair<std::string, std::shared_ptr<Linear>>> lora_targets(Transformer& model, const LoraSpec& spec,
                                                                          const std::string& where = "lora");

// Adds fresh adapters (PEFT's init from a generator seeded with `seed`) to every targeted
// Linear, in the weight's dtype and device. With `freeze_base`, every base parameter stops
// requiring gradients. Returns the adapter tensors with their PEFT names, A before B,
// layer by layer (the order the trainer optimises and saves them in).
std::vector<std::pair<std::string, at::Tensor>> attach_lora(Transformer& model, const LoraSpec& spec, uint64_t seed,
                                                            bool freeze_base = true, const std::string& where = "lora");

// The adapter tensors currently attached, with PEFT names (same order as attach_lora).
std::vector<std::pair<std::string, at::Tensor>> lora_tensors(const Transformer& model);

// Turns every attached adapter on or off (off: the base model's function exactly).
void set_lora_enabled(Transformer& model, bool enabled);

// adapter_config.json text for `spec` (PEFT's field names and defaults).
std::string adapter_config_json(const LoraSpec& spec, const std::string& base_model_name_or_path);

// Writes adapter_config.json and adapter_model.safetensors into `dir` (created if needed),
// each file atomically. Tensors are stored as fp32: those of the model, or where
// `fp32_value` returns a defined tensor for one, that tensor instead (a trainer's fp32
// master copy of a bf16 adapter, which holds more than its rounding).
void save_adapter(const std::string& dir, const Transformer& model, const LoraSpec& spec,
                  const std::string& base_model_name_or_path,
                  const std::function<at::Tensor(const at::Tensor&)>& fp32_value = nullptr);

// Reads a PEFT LoRA adapter directory and attaches it to `model` (the base stays frozen
// only if freeze_base). Every tensor is checked against the model: InputError naming the
// file and tensor for a missing or unexpected tensor, a wrong shape, an unsupported
// option (fan_in_fan_out, bias, DoRA, rsLoRA, rank or alpha patterns).
LoraSpec load_adapter(const std::string& dir, Transformer& model, bool freeze_base = true);

// Reads only adapter_config.json (validated as load_adapter does).
LoraSpec read_adapter_config(const std::string& dir);

// Folds every attached adapter into its base weight, W <- W + scaling * B A (computed in
// fp32), and removes the adapters.
void merge_lora(Transformer& model);

// Removes every adapter (the base model as it was before attach_lora).
void detach_lora(Transformer& model);

}  // namespace safetune::model
