#include "safetune/core/error.h"

namespace safetune {

namespace {

// The message is printed as one line, whatever the input held: control characters (a
// newline in a tensor name, a terminal escape in a YAML key) are shown escaped.
std::string one_line(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    else out += static_cast<char>(c);
  }
  return out;
}

}  // namespace

void input_error(const std::string& where, const std::string& what) {
  throw InputError(one_line(where.empty() ? what : where + ": " + what));
}

uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& where) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) input_error(where, "size overflows 64 bits");
  return r;
}

uint64_t checked_add(uint64_t a, uint64_t b, const std::string& where) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) input_error(where, "offset overflows 64 bits");
  return r;
}

}  // namespace safetune
