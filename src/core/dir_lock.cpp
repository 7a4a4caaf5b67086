#include "safetune/core/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <thread>

#include "safetune/core/error.h"

namespace safetune {
namespace fs = std::filesystem;

namespace {

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

// "pid 1234" (", on host h" when not this one) from what the holder wrote. A holder that
// has just taken the lock may not have written yet: a few short waits for it.
std::string describe_holder(int fd) {
  std::string text;
  for (int tries = 0; tries < 50; ++tries) {
    char buf[512];
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    text.assign(buf, n > 0 ? static_cast<size_t>(n) : 0);
    if (text.find('\n') != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  text = text.substr(0, text.find('\n'));
  const std::string pid = text.substr(0, text.find(' '));
  if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) return "pid unknown";
  const std::string host = text.find(' ') == std::string::npos ? "" : text.substr(text.find(' ') + 1);
  return "pid " + pid + (host.empty() || host == host_name() ? "" : " on host " + host);
}

// The directories that creating `dir` makes: `dir` and its missing parents, deepest first.
std::vector<std::string> missing_dirs(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::path p = dir; !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    out.push_back(p.string());
    if (p == p.parent_path()) break;
  }
  return out;
}

// Whether `dir` holds nothing but its lock file.
bool only_the_lock(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename() != ".lock") return false;
  return !ec;
}

}  // namespace

std::string lock_file_of(const std::string& dir) { return (fs::path(dir) / ".lock").string(); }

DirLock DirLock::acquire(const std::string& dir, const std::string& what) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) input_error(what, "'" + dir + "' is a file");
  const std::string path = lock_file_of(dir);
  // A holder that gives up (release() on a directory it created) removes the lock file and
  // the directory; whoever opened that file just before is then retried on a new one.
  for (int attempt = 0;; ++attempt) {
    std::vector<std::string> created = missing_dirs(dir);
    fs::create_directories(dir, ec);
    if (ec) io_error(dir, "cannot create directory", ec.value());
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
      if (errno == ENOENT && attempt < 100) continue;
      io_error(path, "cannot open the lock file", errno);
    }
    DirLock lock;  // closes fd on every way out
    lock.dir_ = dir;
    lock.fd_ = fd;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err != EWOULDBLOCK) io_error(path, "cannot lock", err);
      input_error(what, "'" + dir + "' is in use by another safetune process (" + describe_holder(fd) +
                            "); wait for it to end, or stop it first");
    }
    // Locked, but maybe a file its holder has since removed: only the one the path names
    // now counts.
    struct stat held {}, named {};
    if (::fstat(fd, &held) != 0 || ::stat(path.c_str(), &named) != 0 || held.st_ino != named.st_ino ||
        held.st_dev != named.st_dev) {
      if (attempt < 100) continue;
      environment_error(path, "the lock file keeps being replaced");
    }
    const std::string me = std::to_string(::getpid()) + " " + host_name() + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()))
      io_error(path, "cannot write the lock file", errno);
    lock.created_ = std::move(created);
    return lock;
  }
}

void DirLock::release() {
  if (fd_ < 0) return;
  // Removed while still held, so that no one else can have started writing there.
  if (!created_.empty() && only_the_lock(dir_)) {
    ::unlink(lock_file_of(dir_).c_str());
    for (const std::string& d : created_)
      if (::rmdir(d.c_str()) != 0) break;  // not empty: someone else's now
  }
  ::close(fd_);
  fd_ = -1;
  created_.clear();
}

DirLock::~DirLock() { release(); }

DirLock::DirLock(DirLock&& other) noexcept
    : dir_(std::move(other.dir_)), fd_(other.fd_), created_(std::move(other.created_)) {
  other.fd_ = -1;
  other.created_.clear();
}

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    release();
    dir_ = std::move(other.dir_);
    fd_ = other.fd_;
    created_ = std::move(other.created_);
    other.fd_ = -1;
    other.created_.clear();
  }
  return *this;
}

}  // namespace safetune
