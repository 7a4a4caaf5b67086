// Child processes (see process.h).
#include "safetune/core/process.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>

extern char** environ;

namespace safetune {

std::vector<int> run_processes(const std::vector<std::vector<std::string>>& commands, int jobs) {
  std::vector<int> status(commands.size(), 127);
  std::map<pid_t, size_t> running;
  size_t next = 0;
  auto wait_one = [&] {
    int st = 0;
    const pid_t pid = waitpid(-1, &st, 0);
    if (pid <= 0) return false;
    const auto it = running.find(pid);
    if (it == running.end()) return true;  // not one of ours
    status[it->second] = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 127;
    running.erase(it);
    return true;
  };
  while (next < commands.size() || !running.empty()) {
    if (next < commands.size() && static_cast<int>(running.size()) < std::max(1, jobs)) {
      std::vector<char*> argv;
      for (const auto& a : commands[next]) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      pid_t pid = 0;
      if (!argv[0] || posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
        status[next++] = 127;
        continue;
      }
      running[pid] = next++;
      continue;
    }
    if (!wait_one()) break;
  }
  return status;
}

}  // namespace safetune
