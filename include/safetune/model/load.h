// HF model directories <-> Transformer: load with every tensor checked against the shapes
// config.json implies, save in HF layout (config.json + model.safetensors), random init.
#pragma once
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "safetune/io/hf_config.h"
#include "safetune/model/transformer.h"

namespace safetune::model {

struct LoadedModel {
  ModelConfig config;
  std::shared_ptr<Transformer> model;
};

// Reads `dir`/config.json and the safetensors checkpoint (single file or sharded). Every
// parameter must be present with the shape implied by config.json, and no unknown tensor
// may be present (rotary inv_freq buffers some checkpoints carry, and a redundant
// lm_head.weight when embeddings are tied, are tolerated). Errors are InputErrors naming
// the tensor. `dtype` defaults to compute_dtype_for(device).
LoadedModel load_model(const std::string& dir, const c10::Device& device = c10::Device(c10::kCPU),
                       std::optional<at::ScalarType> dtype = std::nullopt);

// A randomly initialised model (HF's initializer: normal(0, 0.02), unit norms), fp32 on
// CPU unless told otherwise.
std::shared_ptr<Transformer> init_model(const ModelConfig& cfg, uint64_t seed,
                                        const c10::Device& device = c10::Device(c10::kCPU),
                                        std::optional<at::ScalarType> dtype = std::nullopt);

// Writes `dir`/config.json (torch_dtype set to `stored`) and `dir`/model.safetensors with
// the weights cast to `stored`, each file atomically. `dir` must exist.
void save_model(const std::string& dir, const Transformer& model, at::ScalarType stored = at::kFloat);

// "float32" / "bfloat16" / "float16" <-> dtype; InputError for anything else.
at::ScalarType parse_torch_dtype(const std::string& name, const std::string& where);
std::string torch_dtype_name(at::ScalarType t);

}  // namespace safetune::model
