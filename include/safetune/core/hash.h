// SHA-256 (FIPS 180-4), streamed: the identity of a file or a text, wherever something is
// bound to its inputs (tokens.json to its models, a reference cache to its data, a stage
// of the demo to its settings). Plain and unoptimised: hashing is I/O bound here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace safetune {

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

// sha256 of a byte string / of a file (streamed), lowercase hex.
std::string sha256_hex(const std::string& data);
std::string sha256_file(const std::string& path);

}  // namespace safetune
