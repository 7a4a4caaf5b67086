// Subcommand registry: each src/cli/cmd_<name>.cpp defines one subcommand and registers
// it with a static Command object, so main.cpp never changes when one is added.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace safetune::cli {

struct Command {
  // `setup` adds the subcommand's options to `sub` and returns the action to run after
  // parsing (the action returns the process exit code).
  using Setup = std::function<std::function<int()>(CLI::App& sub)>;
  Command(std::string name, std::string help, Setup setup);
  std::string name, help;
  Setup setup;
};

std::vector<const Command*>& registry();

}  // namespace safetune::cli
