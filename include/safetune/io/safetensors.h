// Safetensors files (https://github.com/huggingface/safetensors format):
//   [u64 little-endian header length N][N bytes of JSON header][tensor bytes]
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} relative
// to the start of the byte buffer, plus an optional "__metadata__" string map.
//
// SafetensorsFile maps the file read-only and validates the whole header up front,
// because these files come from strangers: a bounded header length, well-formed JSON,
// known dtypes, shape x dtype size equal to the byte length (checked arithmetic),
// offsets inside the file, and no two tensors overlapping. After that, data() never
// reads outside the mapping. No torch here: tensor_io.h bridges to at::Tensor.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace safetune::io {

enum class DType { F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F64 };

size_t dtype_size(DType d);
const char* dtype_name(DType d);  // "F32", "BF16", ...

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data buffer
  uint64_t numel() const;
};

// HF's own reader refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// Parses and validates a header. `data_size` is the byte length of the buffer after the
// header; `where` names the file in errors. Throws InputError.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
};
SafetensorsHeader parse_safetensors_header(const char* json, size_t json_size,
                                           uint64_t data_size, const std::string& where);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  // Validates an in-memory buffer (used by the fuzzer and tests); the buffer must
  // outlive the object.
  static SafetensorsFile from_buffer(const uint8_t* data, size_t size, const std::string& where);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) = delete;
  SafetensorsFile(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* find(const std::string& name) const;  // nullptr if absent
  const uint8_t* data(const TensorInfo& t) const { return data_ + t.begin; }

 private:
  SafetensorsFile() = default;
  void init(const uint8_t* base, size_t size);
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// One tensor to write: raw little-endian bytes.
struct TensorBytes {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t size;
};

// Writes a safetensors file atomically (temp file + rename), tensors in the given order,
// each aligned to 8 bytes as HF's writer does (header padded with spaces).
void write_safetensors(const std::string& path, const std::vector<TensorBytes>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace safetune::io
