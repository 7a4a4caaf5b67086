// The run directory's lock: one holder at a time, the refusal names the directory and the
// holder's pid and changes nothing, a released lock can be taken again, and a directory
// the lock created is removed again when nothing was written into it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "safetune/core/dir_lock.h"
#include "safetune/core/error.h"
#include "test_util.h"

namespace safetune {
namespace {
namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(DirLock, ASecondHolderIsRefusedNamingTheFirst) {
  const test_util::ScratchDir scratch("safetune_lock");
  const std::string dir = (fs::path(scratch.path()) / "run").string();
  DirLock first = DirLock::acquire(dir, "train.output_dir");
  ASSERT_TRUE(first.held());
  EXPECT_EQ(slurp(lock_file_of(dir)).substr(0, slurp(lock_file_of(dir)).find(' ')), std::to_string(::getpid()));
  const std::string before = slurp(lock_file_of(dir));
  // flock locks belong to an open file: a second open in this process conflicts as one in
  // another process would.
  const std::string m = test_util::input_error_of([&] { DirLock::acquire(dir, "train.output_dir"); });
  EXPECT_EQ(m, "train.output_dir: '" + dir + "' is in use by another safetune process (pid " +
                   std::to_string(::getpid()) + "); wait for it to end, or stop it first");
  EXPECT_EQ(slurp(lock_file_of(dir)), before);
  EXPECT_TRUE(first.held());

  first.release();
  EXPECT_FALSE(first.held());
  DirLock again = DirLock::acquire(dir, "train.output_dir");
  EXPECT_TRUE(again.held());
}

TEST(DirLock, ADirectoryItCreatedGoesWhenNothingWasWritten) {
  const test_util::ScratchDir scratch("safetune_lock_created");
  const fs::path top = fs::path(scratch.path()) / "runs";
  {
    DirLock l = DirLock::acquire((top / "sweep" / "a").string(), "train.output_dir");
    EXPECT_TRUE(fs::exists(top / "sweep" / "a" / ".lock"));
  }
  EXPECT_FALSE(fs::exists(top)) << "created directories left behind";
  // Something written: everything stays, the lock file too.
  {
    DirLock l = DirLock::acquire((top / "b").string(), "train.output_dir");
    std::ofstream(top / "b" / "config.resolved.yaml") << "x";
  }
  EXPECT_TRUE(fs::exists(top / "b" / "config.resolved.yaml"));
  EXPECT_TRUE(fs::exists(top / "b" / ".lock"));
  // A directory that was there before is never removed.
  fs::create_directories(top / "c");
  { DirLock l = DirLock::acquire((top / "c").string(), "train.output_dir"); }
  EXPECT_TRUE(fs::is_directory(top / "c"));
}

TEST(DirLock, MovedLockStaysHeld) {
  const test_util::ScratchDir scratch("safetune_lock_move");
  const std::string dir = (fs::path(scratch.path()) / "run").string();
  DirLock a = DirLock::acquire(dir, "x");
  DirLock b = std::move(a);
  EXPECT_FALSE(a.held());
  EXPECT_TRUE(b.held());
  EXPECT_NE(test_util::input_error_of([&] { DirLock::acquire(dir, "x"); }), "");
}

TEST(DirLock, AFileIsNoDirectory) {
  const test_util::ScratchDir scratch("safetune_lock_file");
  const std::string file = scratch.write("a_file", "x");
  EXPECT_EQ(test_util::input_error_of([&] { DirLock::acquire(file, "train.output_dir"); }),
            "train.output_dir: '" + file + "' is a file");
}

TEST(DirLock, AHolderThatDiedLeavesNoLock) {
  // Another process (a shell that locks with flock(1), then becomes `sleep`) holds the
  // lock; it is killed.
  const test_util::ScratchDir scratch("safetune_lock_dead");
  const std::string dir = (fs::path(scratch.path()) / "run").string();
  fs::create_directories(dir);
  std::string pid = test_util::run_command("sh -c 'exec 9<>" + lock_file_of(dir) +
                                           "; flock -n 9 && exec sleep 30' >/dev/null 2>&1 & echo $!; sleep 0.3");
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  ASSERT_FALSE(pid.empty()) << "the holder did not start";
  EXPECT_NE(test_util::input_error_of([&] { DirLock::acquire(dir, "train.output_dir"); }).find("pid unknown"),
            std::string::npos);
  test_util::run_command("kill -KILL " + pid + "; sleep 0.2");
  DirLock l = DirLock::acquire(dir, "train.output_dir");
  EXPECT_TRUE(l.held());
}

}  // namespace
}  // namespace safetune
