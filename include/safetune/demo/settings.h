// The demo's settings: one JSON object, the same for every seed, from defaults and
// `key=value` overrides (`safetune demo finetune.optim.lr=1e-3 methods.pact.objective.lambda=2`).
//
//   world     which world (version v2 | v3), data sizes (synthetic_data.h) and the
//             tokenizer's vocabulary
//   regimes   v3: the refusal regimes, each its own chat model ("few", "many")
//   stress    v3: the stress world (a task answer token forced into S): which methods,
//             in which regimes
//   model     the toy Llama's shape
//   probe     train-config keys of the base model's training (full fine-tuning)
//   aligned   train-config keys of the chat model's training (full fine-tuning, from the probe)
//   tokens    PACT step 1: topk, max_resp_len
//   finetune  train-config keys shared by every fine-tuning run: the reference set-up
//             (LoRA r 8 / alpha 32 on q_proj, v_proj, StepLR 0.85, 3 epochs, T 2, gate on)
//   methods   name -> train-config keys of that run (constraint, lambda, variants)
//   eval      generation lengths and batch
//   report    which method rows the claims are about, and the lambda curves
//   choices   every setting chosen by looking at results: the value, what it was chosen
//             on (validation, never test) and by which rule
//   departures  every difference from the reference set-up, with its reason
//
// A stage's cache key hashes the part of the settings it reads (pipeline.cpp), so
// changing any value redoes exactly the stages it affects.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace safetune::demo {

// The defaults of a world ("v3", the default, or "v2": synthetic_data.h, world_v3.h);
// `quick`: smaller world and fewer methods (CI). InputError naming --world otherwise.
nlohmann::json default_settings(bool quick, const std::string& world = "v3");

// The v2 world's defaults (the settings every earlier result was measured with), and the
// v3 world's, made from them (settings_v3.cpp).
nlohmann::json default_settings_v2(bool quick);
nlohmann::json default_settings_v3(nlohmann::json v2_defaults, bool quick);

// Applies "a.b.c=value" overrides: the first component names the section; within the
// train-config sections (probe, aligned, finetune, methods.<name>) the rest is one
// train-config key ("finetune.optim.lr=1e-3", checked when the run's config is built);
// elsewhere the path must exist and the value keep its type. The value is read as JSON
// when it parses, else taken as a string. Throws InputError naming the override.
void apply_settings_override(nlohmann::json& settings, const std::string& key_equals_value);

// The train-config overrides ("key=value", YAML flow values) of a section's object.
std::vector<std::string> train_overrides(const nlohmann::json& section);

// The fine-tuning methods the demo runs by default, and those the curves add (lambda
// grids for pact, kl_full and anchor, and pact's variants).
std::vector<std::string> default_methods(const nlohmann::json& settings);
nlohmann::json curve_methods(const nlohmann::json& settings);

}  // namespace safetune::demo
