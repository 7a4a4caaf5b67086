// libFuzzer target: a training config (YAML plus key=value overrides) from a stranger.
//
// The input is YAML text, optionally followed by a NUL byte and override lines
// ("optim.lr=3e-5"). parse_run_config must either reject it with InputError or return a
// validated RunConfig whose resolved YAML (to_yaml, what the run directory keeps) parses
// back to the same config.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "safetune/core/error.h"
#include "safetune/train/config.h"

using safetune::train::RunConfig;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string yaml = input.substr(0, nul);
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    size_t pos = nul + 1;
    while (pos <= input.size() && overrides.size() < 16) {
      size_t end = input.find('\n', pos);
      if (end == std::string::npos) end = input.size();
      overrides.push_back(input.substr(pos, end - pos));
      pos = end + 1;
    }
  }

  RunConfig cfg;
  try {
    cfg = safetune::train::parse_run_config(yaml, "config.yaml", overrides);
  } catch (const safetune::InputError&) {
    return 0;  // a clean rejection
  }
  const std::string resolved = safetune::train::to_yaml(cfg);
  try {
    const RunConfig again = safetune::train::parse_run_config(resolved, "config.resolved.yaml");
    if (!safetune::train::same_config(cfg, again)) {
      std::fprintf(stderr, "the resolved YAML reads back differently:\n%s\n", resolved.c_str());
      std::abort();
    }
  } catch (const safetune::InputError& e) {
    std::fprintf(stderr, "the resolved YAML does not read back: %s\n%s\n", e.what(), resolved.c_str());
    std::abort();
  }
  return 0;
}
