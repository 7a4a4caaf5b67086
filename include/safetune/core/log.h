// The log: one line per message on stdout, "[2026-12-07 05:45:50.123] [warning] text",
// with "{}" placeholders filled in order ("{:.4f}": fixed with 4 decimals, "{:.6g}": 6
// significant digits, "{:.3e}": scientific). Small on
// purpose: a trainer logs a few dozen lines a run, and LibTorch's wheel brings a fmt of
// its own that a system logging library built on another fmt cannot share a translation
// unit with. No LibTorch.
#pragma once
#include <cstdio>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>

namespace safetune::log {

enum class Level { debug, info, warn, error, off };

// Messages below `level` are dropped (default info; rank > 0 of a data-parallel run: error).
void set_level(Level level);
Level level();
// Where lines go: stdout by default; a stream (tests capture the log), nullptr for stdout.
void set_sink(std::ostream* sink);
void write(Level level, const std::string& message);

namespace detail {
inline void format_to(std::ostringstream& out, std::string_view f) { out << f; }

template <class T, class... Rest>
void format_to(std::ostringstream& out, std::string_view f, const T& value, const Rest&... rest) {
  const size_t open = f.find('{');
  const size_t close = open == std::string_view::npos ? open : f.find('}', open);
  if (close == std::string_view::npos) {
    out << f;
    return;
  }
  out << f.substr(0, open);
  const std::string_view spec = f.substr(open + 1, close - open - 1);  // "" or ":.4f"
  const char kind = spec.empty() ? '\0' : spec.back();
  if (spec.size() >= 4 && spec[0] == ':' && spec[1] == '.' && (kind == 'f' || kind == 'g' || kind == 'e')) {
    std::ostringstream num;
    if (kind == 'f') num << std::fixed;
    if (kind == 'e') num << std::scientific;
    num << std::setprecision(std::stoi(std::string(spec.substr(2, spec.size() - 3)))) << value;
    out << num.str();
  } else {
    out << value;
  }
  format_to(out, f.substr(close + 1), rest...);
}
}  // namespace detail

// "{} of {}" x (3, 8) -> "3 of 8".
template <class... Args>
std::string format(std::string_view f, const Args&... args) {
  std::ostringstream out;
  detail::format_to(out, f, args...);
  return out.str();
}

template <class... Args>
void log_at(Level l, std::string_view f, const Args&... args) {
  if (l >= level()) write(l, format(f, args...));
}
template <class... Args> void debug(std::string_view f, const Args&... a) { log_at(Level::debug, f, a...); }
template <class... Args> void info(std::string_view f, const Args&... a) { log_at(Level::info, f, a...); }
template <class... Args> void warn(std::string_view f, const Args&... a) { log_at(Level::warn, f, a...); }
template <class... Args> void error(std::string_view f, const Args&... a) { log_at(Level::error, f, a...); }

}  // namespace safetune::log
