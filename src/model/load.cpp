// Loading, saving and initialising HF-layout models. The module's parameter names are
// the checkpoint's tensor names, so loading is: for each parameter, find the tensor of
// the same name, check its shape, copy it (casting to the compute dtype).
#include "safetune/model/load.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <filesystem>
#include <set>
#include <sstream>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/io/tensor_io.h"

namespace safetune::model {
namespace fs = std::filesystem;

namespace {

std::string shape_str(c10::IntArrayRef shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

at::ScalarType parse_torch_dtype(const std::string& name, const std::string& where) {
  if (name == "float32" || name == "f32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "f16" || name == "fp16") return at::kHalf;
  input_error(where, "unsupported dtype '" + name + "' (use float32, bfloat16 or float16)");
}

std::string torch_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: throw std::invalid_argument("torch_dtype_name: not a floating model dtype");
  }
}

LoadedModel load_model(const std::string& dir, const c10::Device& device, std::optional<at::ScalarType> dtype) {
  if (!fs::is_directory(dir)) input_error(dir, "model directory not found");
  LoadedModel out;
  out.config = io::load_hf_config(dir);
  const ModelConfig& cfg = out.config;
  io::CheckpointReader reader(dir);
  const at::ScalarType dt = dtype.value_or(compute_dtype_for(device));
  auto model = std::make_shared<Transformer>(cfg, at::TensorOptions().dtype(dt).device(device));

  // Check everything before copying anything: the complete list of problems is one line.
  std::set<std::string> expected;
  const auto params = model->named_parameters();
  for (const auto& item : params) {
    const std::string& name = item.key();
    expected.insert(name);
    if (!reader.contains(name))
      input_error(dir, "checkpoint has no tensor '" + name + "' (expected shape " + shape_str(item.value().sizes()) +
                           " from config.json)");
    const io::TensorInfo& info = reader.info(name);
    if (c10::IntArrayRef(info.shape) != item.value().sizes())
      input_error(dir, "tensor '" + name + "' has shape " + shape_str(info.shape) + ", expected " +
                           shape_str(item.value().sizes()) + " from config.json");
    if (info.dtype != io::DType::F32 && info.dtype != io::DType::BF16 && info.dtype != io::DType::F16)
      input_error(dir, "tensor '" + name + "' has dtype " + io::dtype_name(info.dtype) +
                           "; model weights must be F32, BF16 or F16");
  }
  for (const std::string& name : reader.names()) {
    if (expected.count(name) || ends_with(name, "rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && cfg.tie_word_embeddings) continue;  // a tied copy
    input_error(dir, "unexpected tensor '" + name + "' in the checkpoint (not part of a " + cfg.architecture() +
                         " with this config.json)");
  }

  at::NoGradGuard no_grad;
  for (const auto& item : params) {
    at::Tensor p = item.value();
    p.copy_(reader.load(item.key()));  // casts to the compute dtype and moves to the device
  }
  out.model = model;
  return out;
}

std::shared_ptr<Transformer> init_model(const ModelConfig& cfg, uint64_t seed, const c10::Device& device,
                                        std::optional<at::ScalarType> dtype) {
  const at::ScalarType dt = dtype.value_or(compute_dtype_for(device));
  auto model = std::make_shared<Transformer>(cfg, at::TensorOptions().dtype(dt).device(device));
  model->init_weights(seed);
  return model;
}

void save_model(const std::string& dir, const Transformer& model, at::ScalarType stored) {
  ModelConfig cfg = model.config();
  cfg.torch_dtype = torch_dtype_name(stored);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& item : model.named_parameters())
    tensors.emplace_back(item.key(), item.value().detach().to(at::kCPU).to(stored).contiguous());
  io::save_tensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  write_file_atomic((fs::path(dir) / "config.json").string(), io::hf_config_json(cfg));
}

}  // namespace safetune::model
