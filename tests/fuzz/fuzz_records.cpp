// libFuzzer target: a dataset file (a JSON array of records, or JSONL) from a stranger.
//
// parse_records picks the format from the first non-blank byte ('[' = JSON array), so one
// target covers both. It must either reject the text with InputError or return records
// that each have a prompt ending in a user turn.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "safetune/core/error.h"
#include "safetune/data/records.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto records =
        safetune::data::parse_records(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.jsonl");
    for (const auto& r : records) {
      if (r.prompt.empty() || r.prompt.back().role != "user" || r.where.empty()) {
        std::fprintf(stderr, "accepted a record without a user prompt: %s\n", r.where.c_str());
        std::abort();
      }
      (void)r.extra.dump();
    }
  } catch (const safetune::InputError&) {
    // A clean rejection.
  }
  return 0;
}
