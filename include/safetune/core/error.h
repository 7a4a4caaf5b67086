// Errors and exit codes.
//
// Bad input (a file, a field, a flag the user gave) is an InputError: the CLI prints its
// one-line message and exits with code 2. Anything else escaping to main is a bug or an
// environment failure and exits with code 1.
#pragma once
#include <stdexcept>
#include <string>

namespace safetune {

constexpr int kExitOk = 0;
constexpr int kExitInternal = 1;
constexpr int kExitBadInput = 2;
constexpr int kExitNonFinite = 3;

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

// Throws InputError("<where>: <what>"). `where` names the file (and line or field).
[[noreturn]] void input_error(const std::string& where, const std::string& what);

// Checked arithmetic for sizes taken from untrusted files: throws InputError on overflow.
uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& where);
uint64_t checked_add(uint64_t a, uint64_t b, const std::string& where);

}  // namespace safetune
