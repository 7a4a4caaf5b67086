// File-system helpers: whole-file reads with clear errors, and atomic writes
// (write a temporary file beside the target, fsync, rename), so that a killed process
// or a failed write never leaves a half-written output behind.
#pragma once
#include <string>
#include <string_view>

namespace safetune {

// Reads a whole file; InputError naming the path when it is missing or unreadable.
std::string read_file(const std::string& path);

// Writes `data` to `path` atomically (temp file in the same directory, then rename).
void write_file_atomic(const std::string& path, std::string_view data);

// A temporary file beside `path` that becomes `path` on commit(); removed if never
// committed (an exception or early return leaves nothing behind).
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  const std::string& temp_path() const { return temp_; }
  void write(const void* data, size_t size);
  void commit();

 private:
  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Creates `dir` (and parents) or checks that it is a writable directory: InputError if
// it is a file or cannot be written.
void ensure_output_dir(const std::string& dir);

// Puts directory `temp_dir` in place of `final_dir` with renames: an existing final_dir is
// first renamed aside (to `aside`; default final_dir + ".old.<pid>") and removed after, so
// that a kill leaves either the old directory or the new one, never a partial one.
void replace_dir(const std::string& temp_dir, const std::string& final_dir, const std::string& aside = "");

// True if the path exists (file or directory).
bool path_exists(const std::string& path);

// Directory holding the running executable (for files installed beside it).
std::string executable_dir();

}  // namespace safetune
