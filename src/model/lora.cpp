// LoRA: attach, save and load (PEFT layout), enable/disable, merge.
#include "safetune/model/lora.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/io/tensor_io.h"
#include "safetune/model/transformer.h"

namespace safetune::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const kPrefix = "base_model.model.";  // PEFT: PeftModel.base_model (LoraModel).model

// Every Linear LoRA may target, in model order: (module path, short name, module).
struct Site {
  std::string path, name;
  std::shared_ptr<Linear> linear;
};

// The decoder layers' Linear modules, found in the module tree: each family's own set
// (q_proj ... down_proj, or Phi-3's qkv_proj, o_proj, gate_up_proj, down_proj).
std::vector<Site> all_sites(const Transformer& model) {
  std::vector<Site> out;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    auto linear = std::dynamic_pointer_cast<Linear>(item.value());
    const std::string& path = item.key();
    if (!linear || path.rfind("model.layers.", 0) != 0) continue;
    out.push_back({path, path.substr(path.rfind('.') + 1), linear});
  }
  return out;
}

std::string key_a(const std::string& path) { return kPrefix + path + ".lora_A.weight"; }
std::string key_b(const std::string& path) { return kPrefix + path + ".lora_B.weight"; }

std::string shape_str(c10::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

std::vector<std::pair<std::string, std::shared_ptr<Linear>>> lora_targets(Transformer& model, const LoraSpec& spec,
                                                                          const std::string& where) {
  if (spec.r < 1) input_error(where, "LoRA rank r must be >= 1, got " + std::to_string(spec.r));
  if (spec.target_modules.empty()) input_error(where, "no LoRA target modules given");
  const auto& known = lora_target_names();
  for (const std::string& t : spec.target_modules)
    if (std::find(known.begin(), known.end(), t) == known.end())
      input_error(where, "unknown LoRA target module '" + t + "' (valid: " + lora_target_list() + ")");
  std::vector<std::pair<std::string, std::shared_ptr<Linear>>> out;
  std::set<std::string> matched;
  for (const Site& s : all_sites(model)) {
    if (std::find(spec.target_modules.begin(), spec.target_modules.end(), s.name) == spec.target_modules.end())
      continue;
    const int64_t smaller = std::min(s.linear->in_features, s.linear->out_features);
    if (spec.r > smaller)
      input_error(where, "LoRA rank r = " + std::to_string(spec.r) + " is larger than " + s.path + " (" +
                             std::to_string(s.linear->out_features) + " x " + std::to_string(s.linear->in_features) +
                             "); use r <= " + std::to_string(smaller));
    matched.insert(s.name);
    out.emplace_back(s.path, s.linear);
  }
  const auto& own = model.config().traits().lora_targets;
  for (const std::string& t : spec.target_modules)
    if (!matched.count(t))
      input_error(where, "LoRA target module '" + t + "' matches no layer of the model (" +
                             model.config().architecture() + "'s: " +
                             lora_target_list(std::vector<std::string>(own.begin(), own.end())) + ")");
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> attach_lora(Transformer& model, const LoraSpec& spec, uint64_t seed,
                                                            bool freeze_base, const std::string& where) {
  auto targets = lora_targets(model, spec, where);
  at::NoGradGuard no_grad;
  if (freeze_base)
    for (auto& p : model.parameters()) p.set_requires_grad(false);
  // One generator for every A, in model order: the init depends only on the seed.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& [path, lin] : targets) {
    const auto opts = lin->weight.options();
    // nn.Linear's default init: kaiming_uniform_(a = sqrt(5)) -> bound = 1 / sqrt(fan_in).
    const double bound = 1.0 / std::sqrt(static_cast<double>(lin->in_features));
    at::Tensor a = at::empty({spec.r, lin->in_features}, at::kFloat).uniform_(-bound, bound, gen);
    lin->lora_A = a.to(opts).set_requires_grad(true);
    lin->lora_B = at::zeros({lin->out_features, spec.r}, opts).set_requires_grad(true);
    lin->lora_scaling = spec.scaling();
    lin->lora_dropout = spec.dropout;
    lin->lora_enabled = true;
    out.emplace_back(key_a(path), lin->lora_A);
    out.emplace_back(key_b(path), lin->lora_B);
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> lora_tensors(const Transformer& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const Site& s : all_sites(model)) {
    if (!s.linear->lora_A.defined()) continue;
    out.emplace_back(key_a(s.path), s.linear->lora_A);
    out.emplace_back(key_b(s.path), s.linear->lora_B);
  }
  return out;
}

void set_lora_enabled(Transformer& model, bool enabled) {
  for (const Site& s : all_sites(model)) s.linear->lora_enabled = enabled;
}

std::string adapter_config_json(const LoraSpec& spec, const std::string& base_model_name_or_path) {
  // PEFT's LoraConfig as save_pretrained writes it (sorted keys); the options we do not
  // implement are written at their defaults so that PEFT reads the adapter unchanged.
  json j = {{"alpha_pattern", json::object()},
            {"auto_mapping", nullptr},
            {"base_model_name_or_path", base_model_name_or_path},
            {"bias", "none"},
            {"fan_in_fan_out", false},
            {"inference_mode", true},
            {"init_lora_weights", true},
            {"layer_replication", nullptr},
            {"layers_pattern", nullptr},
            {"layers_to_transform", nullptr},
            {"loftq_config", json::object()},
            {"lora_alpha", spec.alpha},
            {"lora_dropout", spec.dropout},
            {"megatron_config", nullptr},
            {"megatron_core", "megatron.core"},
            {"modules_to_save", nullptr},
            {"peft_type", "LORA"},
            {"r", spec.r},
            {"rank_pattern", json::object()},
            {"revision", nullptr},
            {"target_modules", spec.target_modules},
            {"task_type", "CAUSAL_LM"},
            {"use_dora", false},
            {"use_rslora", false}};
  // Whole-number alphas as integers, as PEFT configs usually carry them (16, 32).
  if (spec.alpha == std::floor(spec.alpha) && std::abs(spec.alpha) < 1e15)
    j["lora_alpha"] = static_cast<int64_t>(spec.alpha);
  return j.dump(2) + "\n";
}

void save_adapter(const std::string& dir, const Transformer& model, const LoraSpec& spec,
                  const std::string& base_model_name_or_path,
                  const std::function<at::Tensor(const at::Tensor&)>& fp32_value) {
  auto tensors = lora_tensors(model);
  if (tensors.empty()) throw std::logic_error("save_adapter: the model has no LoRA adapters");
  fs::create_directories(dir);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& [name, t] : tensors) {
    at::Tensor v = fp32_value ? fp32_value(t) : at::Tensor();
    if (!v.defined()) v = t;
    out.emplace_back(name, v.detach().to(at::kCPU, at::kFloat).contiguous());
  }
  io::save_tensors((fs::path(dir) / "adapter_model.safetensors").string(), out, {{"format", "pt"}});
  write_file_atomic((fs::path(dir) / "adapter_config.json").string(), adapter_config_json(spec, base_model_name_or_path));
}

LoraSpec read_adapter_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / "adapter_config.json").string();
  if (!fs::is_directory(dir)) input_error(dir, "adapter directory not found");
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::parse_error& e) {
    input_error(path, std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object()) input_error(path, "expected a JSON object");
  auto str = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
  if (str("peft_type") != "LORA") input_error(path, "peft_type must be \"LORA\", got " + j.value("peft_type", json()).dump());
  auto truthy = [&](const char* k) { return j.contains(k) && j[k].is_boolean() && j[k].get<bool>(); };
  auto nonempty = [&](const char* k) { return j.contains(k) && !j[k].is_null() && !j[k].empty(); };
  if (truthy("fan_in_fan_out")) input_error(path, "fan_in_fan_out = true is not supported (HF Linear layout only)");
  if (j.contains("bias") && str("bias") != "none") input_error(path, "bias = " + j["bias"].dump() + " is not supported (only \"none\")");
  if (truthy("use_dora")) input_error(path, "use_dora = true (DoRA) is not supported");
  if (truthy("use_rslora")) input_error(path, "use_rslora = true is not supported");
  if (nonempty("rank_pattern") || nonempty("alpha_pattern"))
    input_error(path, "rank_pattern / alpha_pattern are not supported (one rank and alpha for every module)");
  if (nonempty("modules_to_save")) input_error(path, "modules_to_save is not supported");
  LoraSpec spec;
  if (!j.contains("r") || !j["r"].is_number_integer()) input_error(path, "r must be an integer");
  spec.r = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number()) input_error(path, "lora_alpha must be a number");
  spec.alpha = j["lora_alpha"].get<double>();
  spec.base_model = str("base_model_name_or_path");
  spec.dropout = j.contains("lora_dropout") && j["lora_dropout"].is_number() ? j["lora_dropout"].get<double>() : 0.0;
  const json& tm = j.value("target_modules", json());
  spec.target_modules.clear();
  if (tm.is_string()) {
    input_error(path, "target_modules as a regular expression is not supported; list module names");
  } else if (tm.is_array()) {
    for (const auto& t : tm) {
      if (!t.is_string()) input_error(path, "target_modules must be a list of names");
      spec.target_modules.push_back(t.get<std::string>());
    }
  } else {
    input_error(path, "target_modules must be a list of names");
  }
  if (spec.r < 1) input_error(path, "r must be >= 1");
  // PEFT may write the names in any order; keep ours canonical (model order).
  std::vector<std::string> canonical;
  for (const std::string& n : lora_target_names())
    if (std::count(spec.target_modules.begin(), spec.target_modules.end(), n)) canonical.push_back(n);
  for (const std::string& t : spec.target_modules)
    if (!std::count(canonical.begin(), canonical.end(), t))
      input_error(path, "unknown LoRA target module '" + t + "' (valid: " + lora_target_list() + ")");
  spec.target_modules = canonical;
  return spec;
}

LoraSpec load_adapter(const std::string& dir, Transformer& model, bool freeze_base) {
  const LoraSpec spec = read_adapter_config(dir);
  const std::string cfg_path = (fs::path(dir) / "adapter_config.json").string();
  const std::string file = (fs::path(dir) / "adapter_model.safetensors").string();
  if (!fs::exists(file)) input_error(file, "adapter weights not found (adapter_model.safetensors)");
  auto targets = lora_targets(model, spec, cfg_path);
  std::map<std::string, at::Tensor> stored = io::load_tensors(file);
  // Check everything first, then attach.
  std::set<std::string> expected;
  for (auto& [path, lin] : targets) {
    const std::pair<std::string, std::vector<int64_t>> want[] = {{key_a(path), {spec.r, lin->in_features}},
                                                                 {key_b(path), {lin->out_features, spec.r}}};
    for (const auto& [key, shape] : want) {
      expected.insert(key);
      auto it = stored.find(key);
      if (it == stored.end()) input_error(file, "missing tensor '" + key + "'");
      if (it->second.sizes() != c10::IntArrayRef(shape))
        input_error(file, "tensor '" + key + "' has shape " + shape_str(it->second.sizes()) + ", the model needs " +
                              shape_str(shape) + " (r = " + std::to_string(spec.r) + ")");
      if (!at::isFloatingType(it->second.scalar_type())) input_error(file, "tensor '" + key + "' is not floating point");
    }
  }
  for (const auto& [key, t] : stored)
    if (!expected.count(key)) input_error(file, "unexpected tensor '" + key + "' (not an adapter of this model's " +
                                                    "target modules)");
  at::NoGradGuard no_grad;
  if (freeze_base)
    for (auto& p : model.parameters()) p.set_requires_grad(false);
  for (auto& [path, lin] : targets) {
    const auto opts = lin->weight.options();
    lin->lora_A = stored.at(key_a(path)).to(opts).contiguous().set_requires_grad(true);
    lin->lora_B = stored.at(key_b(path)).to(opts).contiguous().set_requires_grad(true);
    lin->lora_scaling = spec.scaling();
    lin->lora_dropout = spec.dropout;
    lin->lora_enabled = true;
  }
  return spec;
}

void merge_lora(Transformer& model) {
  at::NoGradGuard no_grad;
  for (const Site& s : all_sites(model)) {
    Linear& lin = *s.linear;
    if (!lin.lora_A.defined()) continue;
    at::Tensor delta = at::matmul(lin.lora_B.to(at::kFloat), lin.lora_A.to(at::kFloat)) * lin.lora_scaling;
    at::Tensor w = lin.weight.to(at::kFloat) + delta.to(lin.weight.device());
    lin.weight.copy_(w);
  }
  detach_lora(model);
}

void detach_lora(Transformer& model) {
  for (const Site& s : all_sites(model)) {
    s.linear->lora_A = at::Tensor();
    s.linear->lora_B = at::Tensor();
    s.linear->lora_scaling = 0.0;
    s.linear->lora_dropout = 0.0;
  }
}

}  // namespace safetune::model
