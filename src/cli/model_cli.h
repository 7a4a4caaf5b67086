// Small helpers shared by the model subcommands (logits, generate, bench): token-id
// lists, device names, thread set-up.
#pragma once
#include <ATen/Parallel.h>
#include <c10/core/Device.h>
#include <malloc.h>

#include <cstdint>
#include <string>
#include <vector>

#include "safetune/core/error.h"

namespace safetune::cli {

// "1,2,3" (spaces allowed) -> ids; InputError naming `where` otherwise.
inline std::vector<int64_t> parse_id_list(const std::string& s, const std::string& where) {
  std::vector<int64_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == ',')) ++i;
    if (i == s.size()) break;
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i || (j < s.size() && s[j] != ',' && s[j] != ' '))
      input_error(where, "expected comma-separated non-negative token ids, got '" + s + "'");
    if (j - i > 12) input_error(where, "token id too large in '" + s + "'");
    ids.push_back(std::stoll(s.substr(i, j - i)));
    i = j;
  }
  if (ids.empty()) input_error(where, "no token ids given");
  return ids;
}

inline void check_ids(const std::vector<int64_t>& ids, int64_t vocab, const std::string& where) {
  for (int64_t id : ids)
    if (id < 0 || id >= vocab)
      input_error(where, "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

inline c10::Device parse_device(const std::string& s) {
  if (s == "cpu") return c10::Device(c10::kCPU);
  if (s == "cuda" || s.rfind("cuda:", 0) == 0) return c10::Device(s);
  input_error("--device", "expected cpu or cuda[:N], got '" + s + "'");
}

// Keep freed memory in the process for reuse. glibc serves big blocks (logits, attention
// scores: tens to hundreds of MB) with fresh mmaps that the kernel must fault in and zero
// again on every forward; reusing heap memory instead saves ~10% of a small model's
// forward time. Memory is not returned to the system before exit.
inline void keep_freed_memory() {
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace safetune::cli
