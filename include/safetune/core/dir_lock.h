// One process at a time in a directory: an exclusive flock on DIR/.lock, held for as long
// as the DirLock lives. The kernel drops it when the process ends, however it ends, so a
// killed process never leaves a stale lock and nothing has to be cleaned up by hand. The
// holder writes its pid (and host) into the file for the message of those it refuses; the
// lock, not the file, is the truth: the file stays after its holder is gone.
//
// Used for run directories: two `safetune train` started on the same directory (a job
// queued twice, a sweep started twice) would otherwise both write checkpoints and the
// final weights into it.
#pragma once
#include <string>
#include <vector>

namespace safetune {

class DirLock {
 public:
  DirLock() = default;  // holds nothing
  ~DirLock();
  DirLock(DirLock&& other) noexcept;
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

  // Creates `dir` (and its parents) when missing and takes its lock, without waiting.
  // When another process holds it: InputError "<what>: '<dir>' is in use by another
  // safetune process (pid N); ...", having changed nothing there. InputError naming the
  // path when `dir` is a file or cannot be created (EnvironmentError for a full or
  // read-only disk).
  static DirLock acquire(const std::string& dir, const std::string& what);

  bool held() const { return fd_ >= 0; }
  const std::string& dir() const { return dir_; }

  // Lets the lock go now. Directories that acquire() created and that hold nothing but
  // the lock file (a run refused for bad input before it wrote anything) are removed, so
  // that a failed start leaves no trace.
  void release();

 private:
  std::string dir_;
  int fd_ = -1;
  std::vector<std::string> created_;  // by acquire(), deepest first
};

// The lock file of `dir`: dir/.lock.
std::string lock_file_of(const std::string& dir);

}  // namespace safetune
