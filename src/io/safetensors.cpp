#include "safetune/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/json_depth.h"

namespace safetune::io {
using nlohmann::json;

namespace {

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},   {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
    {DType::F64, "F64", 8},
};

const DTypeEntry& entry(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e;
  throw std::logic_error("unknown dtype");
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

size_t dtype_size(DType d) { return entry(d).size; }
const char* dtype_name(DType d) { return entry(d).name; }

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t s : shape) n *= static_cast<uint64_t>(s);
  return n;
}

SafetensorsHeader parse_safetensors_header(const char* text, size_t size, uint64_t data_size,
                                           const std::string& where) {
  if (find_json_too_deep(std::string_view(text, size)) != std::string_view::npos)
    input_error(where, "safetensors header nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json header;
  try {
    header = json::parse(text, text + size);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    input_error(where, std::string("safetensors header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object()) input_error(where, "safetensors header must be a JSON object");

  SafetensorsHeader out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const std::string at = where + ": tensor '" + name + "'";
    if (name == "__metadata__") {
      if (!it->is_object()) input_error(where, "__metadata__ must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) input_error(where, "__metadata__['" + m.key() + "'] must be a string");
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const json& t = *it;
    if (!t.is_object()) input_error(at, "entry must be an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!t.contains(key)) input_error(at, std::string("missing field '") + key + "'");

    TensorInfo info;
    info.name = name;
    if (!t["dtype"].is_string()) input_error(at, "dtype must be a string");
    const std::string dtype = t["dtype"].get<std::string>();
    bool known = false;
    for (const auto& e : kDTypes)
      if (dtype == e.name) info.dtype = e.dtype, known = true;
    if (!known)
      input_error(at, "unsupported dtype '" + dtype + "' (expected F32, F64, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");

    if (!t["shape"].is_array()) input_error(at, "shape must be an array");
    uint64_t numel = 1;
    for (const json& d : t["shape"]) {
      if (!d.is_number_unsigned()) input_error(at, "shape entries must be non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(INT64_MAX)) input_error(at, "shape entry too large");
      info.shape.push_back(static_cast<int64_t>(dim));
      numel = checked_mul(numel, dim, at);
    }
    const uint64_t nbytes = checked_mul(numel, entry(info.dtype).size, at);

    const json& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      input_error(at, "data_offsets must be [begin, end] non-negative integers");
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    if (info.end < info.begin) input_error(at, "data_offsets end is before begin");
    if (info.end > data_size)
      input_error(at, "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                          "] run past the end of the file (" + std::to_string(data_size) + " data bytes)");
    if (info.end - info.begin != nbytes)
      input_error(at, "byte length " + std::to_string(info.end - info.begin) + " does not match shape x dtype size " +
                          std::to_string(nbytes));
    out.tensors.push_back(std::move(info));
  }

  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  // In begin order, a tensor overlaps an earlier one when it starts before the furthest
  // end seen so far (not only the previous tensor's: an empty one in between would hide
  // it). Empty tensors occupy no bytes and may share an offset with anything.
  const TensorInfo* furthest = nullptr;
  for (const TensorInfo& cur : out.tensors) {
    if (furthest && cur.end > cur.begin && cur.begin < furthest->end)
      input_error(where, "tensors '" + furthest->name + "' and '" + cur.name + "' overlap");
    if (!furthest || cur.end > furthest->end) furthest = &cur;
  }
  return out;
}

void SafetensorsFile::init(const uint8_t* base, size_t size) {
  if (size < 8) input_error(path_, "too small to be a safetensors file (" + std::to_string(size) + " bytes)");
  const uint64_t n = read_u64_le(base);
  if (n > kMaxHeaderBytes)
    input_error(path_, "safetensors header length " + std::to_string(n) + " exceeds the " +
                           std::to_string(kMaxHeaderBytes) + "-byte limit");
  if (n > size - 8)
    input_error(path_, "safetensors header length " + std::to_string(n) + " runs past the end of the file (" +
                           std::to_string(size) + " bytes)");
  header_ = parse_safetensors_header(reinterpret_cast<const char*>(base + 8), n, size - 8 - n, path_);
  data_ = base + 8 + n;
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

SafetensorsFile::SafetensorsFile(const std::string& path) {
  path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) input_error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    input_error(path, "not a regular file");
  }
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ > 0) {
    map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      ::close(fd);
      input_error(path, std::string("mmap failed: ") + std::strerror(errno));
    }
  }
  ::close(fd);
  try {
    init(static_cast<const uint8_t*>(map_), map_size_);
  } catch (...) {  // a throwing constructor runs no destructor: unmap here
    if (map_) ::munmap(map_, map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile SafetensorsFile::from_buffer(const uint8_t* data, size_t size, const std::string& where) {
  SafetensorsFile f;
  f.path_ = where;
  f.init(data, size);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), map_(o.map_), map_size_(o.map_size_), data_(o.data_),
      header_(std::move(o.header_)), index_(std::move(o.index_)) {
  o.map_ = nullptr;
  o.map_size_ = 0;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

void write_safetensors(const std::string& path, const std::vector<TensorBytes>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorBytes& t : tensors) {
    uint64_t numel = 1;
    for (int64_t s : t.shape) numel *= static_cast<uint64_t>(s);
    if (numel * dtype_size(t.dtype) != t.size)
      throw std::invalid_argument("write_safetensors: '" + t.name + "' size does not match its shape");
    if (header.contains(t.name)) throw std::invalid_argument("write_safetensors: duplicate tensor '" + t.name + "'");
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.size}}};
    offset += t.size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  AtomicFile out(path);
  out.write(len, 8);
  out.write(text.data(), text.size());
  for (const TensorBytes& t : tensors) out.write(t.data, t.size);
  out.commit();
}

}  // namespace safetune::io
