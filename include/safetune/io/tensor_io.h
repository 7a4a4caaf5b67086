// Safetensors <-> at::Tensor, and HF checkpoint directories (one model.safetensors, or
// shards listed in model.safetensors.index.json).
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "safetune/io/safetensors.h"

namespace safetune::io {

// A CPU tensor holding a copy of the stored bytes, in the stored dtype.
at::Tensor to_tensor(const SafetensorsFile& file, const TensorInfo& info);

// Writes named CPU-contiguous copies of the tensors (F32/F16/BF16/I64/I32/I16/I8/U8/BOOL).
void save_tensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  const std::map<std::string, std::string>& metadata = {});

// Loads every tensor of one safetensors file.
std::map<std::string, at::Tensor> load_tensors(const std::string& path);

// An HF checkpoint directory: model.safetensors or model.safetensors.index.json + shards.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& dir);
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  at::Tensor load(const std::string& name) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>> index_;
};

}  // namespace safetune::io
