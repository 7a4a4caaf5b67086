// The run config of the config-driven subcommands (train, ref-cache, bench step): a YAML
// file and key=value overrides with the config's dotted names.
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "safetune/core/error.h"
#include "safetune/train/config.h"

namespace safetune::cli {

struct ConfigArgs {
  std::string config;
  std::vector<std::string> overrides;
};

// The overrides as trailing positional arguments.
inline void add_overrides(CLI::App& app, ConfigArgs& a) {
  app.add_option("overrides", a.overrides, "key=value overrides with the config's dotted names");
}

// The config file as the first positional argument (`config_help` says which), then the overrides.
inline void add_config_args(CLI::App& app, ConfigArgs& a, const std::string& config_help) {
  app.add_option("config", a.config, config_help);
  add_overrides(app, a);
}

// The config they name, parsed and validated. InputError naming `command` with `usage`
// when no file is given; naming an override that is not key=value (`example` shows one).
inline train::RunConfig load_config_args(const ConfigArgs& a, const std::string& command, const std::string& usage,
                                         const std::string& example) {
  if (a.config.empty()) input_error(command, usage);
  for (const std::string& kv : a.overrides)
    if (kv.find('=') == std::string::npos)
      input_error(kv, "overrides are key=value (e.g. " + example + "); got '" + kv + "'");
  return train::load_run_config(a.config, a.overrides);
}

}  // namespace safetune::cli
