#include "safetune/core/error.h"

namespace safetune {

void input_error(const std::string& where, const std::string& what) {
  throw InputError(where.empty() ? what : where + ": " + what);
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
