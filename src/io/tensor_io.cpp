#include "safetune/io/tensor_io.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"

namespace safetune::io {
namespace fs = std::filesystem;

namespace {

at::ScalarType to_scalar_type(DType d) {
  switch (d) {
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::I16: return at::kShort;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::BOOL: return at::kBool;
    case DType::F64: return at::kDouble;
  }
  throw std::logic_error("unknown dtype");
}

DType from_scalar_type(at::ScalarType t, const std::string& name) {
  switch (t) {
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kLong: return DType::I64;
    case at::kInt: return DType::I32;
    case at::kShort: return DType::I16;
    case at::kChar: return DType::I8;
    case at::kByte: return DType::U8;
    case at::kBool: return DType::BOOL;
    case at::kDouble: return DType::F64;
    default: throw std::invalid_argument("save_tensors: unsupported dtype for '" + name + "'");
  }
}

}  // namespace

at::Tensor to_tensor(const SafetensorsFile& file, const TensorInfo& info) {
  at::Tensor out = at::empty(info.shape, at::TensorOptions().dtype(to_scalar_type(info.dtype)));
  // The stored bytes are little-endian, as is every platform LibTorch supports here.
  std::memcpy(out.data_ptr(), file.data(info), info.end - info.begin);
  return out;
}

void save_tensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> keep;  // contiguous CPU copies stay alive until written
  std::vector<TensorBytes> items;
  keep.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    keep.push_back(t.detach().to(at::kCPU).contiguous());
    const at::Tensor& c = keep.back();
    items.push_back({name, from_scalar_type(c.scalar_type(), name), c.sizes().vec(), c.data_ptr(),
                     static_cast<size_t>(c.numel()) * c.element_size()});
  }
  write_safetensors(path, items, metadata);
}

std::map<std::string, at::Tensor> load_tensors(const std::string& path) {
  SafetensorsFile file(path);
  std::map<std::string, at::Tensor> out;
  for (const TensorInfo& info : file.tensors()) out[info.name] = to_tensor(file, info);
  return out;
}

CheckpointReader::CheckpointReader(const std::string& dir) : dir_(dir) {
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> shard_files;
  if (path_exists(index.string())) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(index.string()));
    } catch (const nlohmann::json::exception& e) {
      input_error(index.string(), std::string("not valid JSON: ") + e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      input_error(index.string(), "missing object field 'weight_map'");
    std::map<std::string, std::string> weight_map;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it->is_string()) input_error(index.string(), "weight_map['" + it.key() + "'] must be a file name");
      const std::string file = it->get<std::string>();
      // Shard names come from the index file: keep them inside the model directory.
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
        input_error(index.string(), "weight_map['" + it.key() + "'] = '" + file + "' is not a plain file name");
      weight_map[it.key()] = file;
      if (std::find(shard_files.begin(), shard_files.end(), file) == shard_files.end()) shard_files.push_back(file);
    }
    for (const std::string& f : shard_files) files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / f).string()));
    for (const auto& [name, file] : weight_map) {
      size_t k = std::find(shard_files.begin(), shard_files.end(), file) - shard_files.begin();
      const TensorInfo* info = files_[k]->find(name);
      if (!info) input_error(index.string(), "tensor '" + name + "' is listed in " + file + " but not stored there");
      index_[name] = {files_[k].get(), info};
    }
  } else if (path_exists(single.string())) {
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const TensorInfo& info : files_[0]->tensors()) index_[info.name] = {files_[0].get(), &info};
  } else {
    input_error(dir, "no model.safetensors or model.safetensors.index.json in this directory");
  }
}

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

bool CheckpointReader::contains(const std::string& name) const { return index_.count(name) > 0; }

const TensorInfo& CheckpointReader::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) input_error(dir_, "checkpoint has no tensor '" + name + "'");
  return *it->second.second;
}

at::Tensor CheckpointReader::load(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) input_error(dir_, "checkpoint has no tensor '" + name + "'");
  return to_tensor(*it->second.first, *it->second.second);
}

}  // namespace safetune::io
