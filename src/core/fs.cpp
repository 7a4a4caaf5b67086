#include "safetune/core/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "safetune/core/error.h"

namespace safetune {
namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) input_error(path, "is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) input_error(path, std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) input_error(path, "read failed");
  return ss.str();
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  temp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) io_error(path_, "cannot write", errno);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Nothing the user named can make a write to a file we opened fail: the disk is
      // full, over quota, or failing. The destructor removes the temporary.
      environment_error(path_, std::string("write failed: ") + std::strerror(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  // Some file systems (NFS, quotas) report a full disk only at fsync or close.
  if (::fsync(fd_) != 0) environment_error(path_, std::string("fsync failed: ") + std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) environment_error(path_, std::string("close failed: ") + std::strerror(errno));
  if (::rename(temp_.c_str(), path_.c_str()) != 0) io_error(path_, "rename failed", errno);
  committed_ = true;
}

void write_file_atomic(const std::string& path, std::string_view data) {
  AtomicFile f(path);
  f.write(data.data(), data.size());
  f.commit();
}

void ensure_output_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    input_error(dir, "exists and is not a directory");
  fs::create_directories(dir, ec);
  if (ec) io_error(dir, "cannot create directory", ec.value());
  if (::access(dir.c_str(), W_OK) != 0) input_error(dir, "directory is not writable");
}

void replace_dir(const std::string& temp_dir, const std::string& final_dir, const std::string& aside) {
  if (!fs::exists(final_dir)) {
    fs::rename(temp_dir, final_dir);
    return;
  }
  const std::string old = aside.empty() ? final_dir + ".old." + std::to_string(::getpid()) : aside;
  fs::remove_all(old);
  fs::rename(final_dir, old);
  std::error_code ec;
  fs::rename(temp_dir, final_dir, ec);
  if (ec) {  // put the old one back rather than leave neither in place
    std::error_code back;
    fs::rename(old, final_dir, back);
    throw fs::filesystem_error("cannot rename", temp_dir, final_dir, ec);
  }
  fs::remove_all(old);
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

std::string executable_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

}  // namespace safetune
