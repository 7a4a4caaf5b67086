#include "safetune/core/error.h"

#include <cerrno>
#include <cstring>
#include <system_error>

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

void environment_error(const std::string& where, const std::string& what) {
  throw EnvironmentError(one_line(where.empty() ? what : where + ": " + what));
}

bool is_environment_errno(int err) {
  switch (err) {
    case ENOSPC: case EDQUOT: case EIO: case EROFS: case EFBIG: case ENOMEM: case EMFILE: case ENFILE:
    case ENOBUFS: case ESTALE: case ENODEV: case ENXIO: case ETIMEDOUT: case ECONNRESET: case ECONNREFUSED:
    case ECONNABORTED: case EPIPE: case EHOSTUNREACH: case ENETUNREACH: case ENETDOWN: case ENOLINK:
    case EREMOTEIO: case EAGAIN: case EBUSY: case ETXTBSY:
      return true;
    default:
      return false;
  }
}

bool is_environment_failure(const std::exception& e) {
  if (dynamic_cast<const EnvironmentError*>(&e)) return true;
  const auto* se = dynamic_cast<const std::system_error*>(&e);
  return se && (se->code().category() == std::generic_category() || se->code().category() == std::system_category()) &&
         is_environment_errno(se->code().value());
}

void rethrow_noting(const std::string& note) {
  try {
    throw;
  } catch (const std::exception& e) {
    if (!is_environment_failure(e)) throw;
    throw EnvironmentError(one_line(std::string(e.what()) + " (" + note + ")"));
  }
}

void io_error(const std::string& where, const std::string& what, int err) {
  const std::string message = what + ": " + std::strerror(err);
  if (is_environment_errno(err)) environment_error(where, message);
  input_error(where, message);
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
