// Streaming SHA-256 (internal to src/safety).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace safetune::safety {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  void update_file(const std::string& path);  // InputError when unreadable
  std::string hex();                           // finishes the hash; call once

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

}  // namespace safetune::safety
