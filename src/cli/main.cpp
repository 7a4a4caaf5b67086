// safetune: the command-line entry point. Subcommands register themselves (command.h);
// main parses, runs the chosen one, and turns errors into one line and an exit code.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "command.h"
#include "safetune/core/build_info.h"
#include "safetune/core/error.h"

namespace safetune::cli {

Command::Command(std::string n, std::string h, Setup s)
    : name(std::move(n)), help(std::move(h)), setup(std::move(s)) {
  registry().push_back(this);
}

std::vector<const Command*>& registry() {
  static std::vector<const Command*> commands;
  return commands;
}

}  // namespace safetune::cli

int main(int argc, char** argv) {
  using namespace safetune;
  CLI::App app{"safetune: fine-tune chat models while keeping their safety alignment"};
  app.set_version_flag("--version", describe_build());
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 done; 1 internal error (a bug: please report it); 2 bad input (a file, field or flag:\n"
      "the message names it), also a run directory in use by another process; 3 train stopped on\n"
      "non-finite losses; 4 the environment failed (disk full, I/O error, read-only file system, a lost\n"
      "peer of a data-parallel run): nothing half-written is left, and train.resume=auto continues a\n"
      "run from its last checkpoint once the cause is fixed.");

  auto& commands = cli::registry();
  std::sort(commands.begin(), commands.end(),
            [](const cli::Command* a, const cli::Command* b) { return a->name < b->name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> actions;
  try {
    for (const cli::Command* c : commands) {
      CLI::App* sub = app.add_subcommand(c->name, c->help);
      actions.emplace_back(sub, c->setup(*sub));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "safetune: internal error while setting up commands: %s\n", e.what());
    return kExitInternal;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help / --version end here too (exit code 0): CLI11 prints them.
    if (e.get_exit_code() == 0) return app.exit(e);
    // A bad flag is bad input like any other: one line, exit 2.
    std::fprintf(stderr, "safetune: error: %s (see --help)\n", e.what());
    return kExitBadInput;
  }

  try {
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const InputError& e) {
    std::fprintf(stderr, "safetune: error: %s\n", e.what());
    return kExitBadInput;
  } catch (const std::exception& e) {
    if (is_environment_failure(e)) {  // a full disk, an I/O error: not the input, not a bug
      std::string msg = e.what();
      std::fprintf(stderr, "safetune: error: %s\n", msg.substr(0, msg.find('\n')).c_str());
      return kExitEnvironment;
    }
    // c10::Error messages carry a multi-line backtrace: keep the first line.
    std::string msg = e.what();
    auto nl = msg.find('\n');
    if (nl != std::string::npos) msg = msg.substr(0, nl);
    std::fprintf(stderr, "safetune: internal error: %s\n", msg.c_str());
    return kExitInternal;
  }
  return kExitInternal;
}
