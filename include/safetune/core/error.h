// Errors and exit codes.
//
// Bad input (a file, a field, a flag the user gave) is an InputError: the CLI prints its
// one-line message and exits with code 2. A failure of the environment, not of the input
// (a full disk, an I/O error, a read-only file system, a lost peer of a data-parallel
// run), is an EnvironmentError: one line, exit code 4; the same command can succeed once
// the cause is gone, and a training run resumes from its last checkpoint. Anything else
// escaping to main is a bug and exits with code 1.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace safetune {

constexpr int kExitOk = 0;
constexpr int kExitInternal = 1;
constexpr int kExitBadInput = 2;
constexpr int kExitNonFinite = 3;
constexpr int kExitEnvironment = 4;

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

class EnvironmentError : public std::runtime_error {
 public:
  explicit EnvironmentError(const std::string& message) : std::runtime_error(message) {}
};

// Throws InputError("<where>: <what>"). `where` names the file (and line or field).
[[noreturn]] void input_error(const std::string& where, const std::string& what);

// Throws EnvironmentError("<where>: <what>").
[[noreturn]] void environment_error(const std::string& where, const std::string& what);

// Whether a failed system call's errno says the environment failed (no space, quota, I/O
// error, read-only file system, file too large, out of memory or descriptors, a stale or
// vanished device or peer) rather than that the user named a wrong path (ENOENT, EACCES,
// ENOTDIR, EISDIR, ...).
bool is_environment_errno(int err);

// Whether `e` is an environment failure: an EnvironmentError, or a std::system_error
// (std::filesystem's errors among them) whose errno is_environment_errno.
bool is_environment_failure(const std::exception& e);

// In a catch block: rethrows the exception in flight, an environment failure as an
// EnvironmentError whose message ends with " (<note>)" (what the failure left, how to go
// on), anything else as it was.
[[noreturn]] void rethrow_noting(const std::string& note);

// Throws "<where>: <what>: <strerror(err)>" as an EnvironmentError when
// is_environment_errno(err), else as an InputError.
[[noreturn]] void io_error(const std::string& where, const std::string& what, int err);

// Checked arithmetic for sizes taken from untrusted files: throws InputError on overflow.
uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& where);
uint64_t checked_add(uint64_t a, uint64_t b, const std::string& where);

}  // namespace safetune
