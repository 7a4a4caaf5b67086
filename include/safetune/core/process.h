// Child processes: run command lines, at most `jobs` at a time, and wait for them all.
#pragma once
#include <string>
#include <vector>

namespace safetune {

// Runs each command (argv[0] is an executable path; no shell) with the parent's
// environment, stdout and stderr, keeping at most `jobs` running. Returns each one's
// exit status (128 + signal number when killed by a signal, 127 when it could not start),
// in the order given.
std::vector<int> run_processes(const std::vector<std::vector<std::string>>& commands, int jobs);

}  // namespace safetune
