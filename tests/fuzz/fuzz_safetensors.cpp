// libFuzzer target: a safetensors file from a stranger.
//
// The input is the whole file. SafetensorsFile::from_buffer must either reject it with
// InputError or accept a header whose every tensor lies inside the buffer, has exactly
// shape x dtype-size bytes and overlaps no other tensor. Reading every byte of every
// tensor lets AddressSanitizer catch a read outside the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "safetune/core/error.h"
#include "safetune/io/safetensors.h"

using safetune::io::SafetensorsFile;
using safetune::io::TensorInfo;

namespace {

[[noreturn]] void broken(const char* what, const TensorInfo& t) {
  std::fprintf(stderr, "accepted a bad header: %s (tensor '%s' [%llu, %llu])\n", what, t.name.c_str(),
               static_cast<unsigned long long>(t.begin), static_cast<unsigned long long>(t.end));
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    SafetensorsFile f = SafetensorsFile::from_buffer(data, size, "fuzz.safetensors");
    const uint8_t* end_of_input = data + size;
    uint64_t sum = 0, max_end = 0;
    for (const TensorInfo& t : f.tensors()) {  // sorted by begin offset
      if (t.end < t.begin) broken("end before begin", t);
      const uint64_t nbytes = t.end - t.begin;
      if (t.numel() * safetune::io::dtype_size(t.dtype) != nbytes) broken("size does not match shape", t);
      const uint8_t* p = f.data(t);
      if (p < data || p > end_of_input || nbytes > static_cast<uint64_t>(end_of_input - p))
        broken("bytes outside the file", t);
      if (nbytes > 0 && t.begin < max_end) broken("overlaps an earlier tensor", t);
      if (t.end > max_end) max_end = t.end;
      if (f.find(t.name) != &t) broken("find() does not return it", t);
      for (uint64_t i = 0; i < nbytes; ++i) sum += p[i];
    }
    for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
    // Keep the reads from being optimised away.
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const safetune::InputError&) {
    // A clean rejection.
  }
  return 0;
}
