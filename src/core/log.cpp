// The log (log.h).
#include "safetune/core/log.h"

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>

namespace safetune::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::ostream* g_sink = nullptr;
std::mutex g_mu;

const char* name_of(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warning";
    case Level::error: return "error";
    case Level::off: break;
  }
  return "off";
}
}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

void set_sink(std::ostream* sink) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_sink = sink;
}

void write(Level level, const std::string& message) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t t = system_clock::to_time_t(now);
  const long ms = static_cast<long>(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  char head[64];
  std::snprintf(head, sizeof head, "[%s.%03ld] [%s] ", stamp, ms, name_of(level));
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_sink) {
    *g_sink << head << message << '\n';
  } else {
    std::fprintf(stdout, "%s%s\n", head, message.c_str());
    std::fflush(stdout);
  }
}

}  // namespace safetune::log
