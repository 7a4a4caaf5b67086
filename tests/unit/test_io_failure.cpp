// Failures of the environment while writing: they are told apart from bad input (their
// own exception and exit code, decided by errno), a failed atomic write leaves no
// temporary, and a checkpoint that cannot be written leaves no .tmp-step-N, keeps
// `latest` on the last good checkpoint, says where a resume continues, and the resume
// ends as a run that never failed. A file size limit (RLIMIT_FSIZE: write(2) fails with
// EFBIG, as it fails with ENOSPC on a full disk) stands in for the full disk here, without
// root; tests/e2e/disk_full.sh fills a real one.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/io/tensor_io.h"
#include "safetune/train/trainer.h"
#include "test_util.h"

namespace safetune {
namespace {
namespace fs = std::filesystem;

// Files of this process cannot grow past `bytes` while it lives (SIGXFSZ ignored, so the
// write fails with EFBIG instead of killing the process).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    previous_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit l = saved_;
    l.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &l);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, previous_);
  }

 private:
  rlimit saved_{};
  void (*previous_)(int) = nullptr;
};

TEST(EnvironmentError, TheErrnoSaysWhoseFailureItIs) {
  for (int e : {ENOSPC, EDQUOT, EIO, EROFS, EFBIG}) EXPECT_TRUE(is_environment_errno(e)) << e;
  for (int e : {ENOENT, EACCES, ENOTDIR, EISDIR, EEXIST}) EXPECT_FALSE(is_environment_errno(e)) << e;
  EXPECT_THROW(io_error("f", "write failed", ENOSPC), EnvironmentError);
  EXPECT_THROW(io_error("f", "cannot write", ENOENT), InputError);
  try {
    io_error("runs/a/latest", "cannot write", ENOSPC);
  } catch (const EnvironmentError& e) {
    EXPECT_STREQ(e.what(), "runs/a/latest: cannot write: No space left on device");
  }
  const fs::filesystem_error full("cannot copy", "a", "b", std::error_code(ENOSPC, std::generic_category()));
  const fs::filesystem_error missing("cannot copy", "a", "b", std::error_code(ENOENT, std::generic_category()));
  EXPECT_TRUE(is_environment_failure(full));
  EXPECT_FALSE(is_environment_failure(missing));
  EXPECT_FALSE(is_environment_failure(std::runtime_error("a bug")));
  EXPECT_FALSE(is_environment_failure(InputError("bad")));
  EXPECT_NE(kExitEnvironment, kExitBadInput);
  EXPECT_NE(kExitEnvironment, kExitNonFinite);
  EXPECT_NE(kExitEnvironment, kExitInternal);
}

TEST(EnvironmentError, ANoteIsAddedToEnvironmentFailuresOnly) {
  auto noted = [](auto thrower) -> std::string {
    try {
      try {
        thrower();
      } catch (...) {
        rethrow_noting("what to do");
      }
    } catch (const EnvironmentError& e) {
      return std::string("env: ") + e.what();
    } catch (const std::exception& e) {
      return std::string("other: ") + e.what();
    }
    return "";
  };
  EXPECT_EQ(noted([] { environment_error("f", "write failed"); }), "env: f: write failed (what to do)");
  EXPECT_EQ(noted([] { throw fs::filesystem_error("x", std::error_code(EIO, std::generic_category())); })
                .rfind("env: ", 0),
            0u);
  EXPECT_EQ(noted([] { input_error("f", "bad"); }), "other: f: bad");
}

TEST(IoFailure, AFailedAtomicWriteLeavesNothing) {
  const test_util::ScratchDir scratch("safetune_io_atomic");
  const std::string path = (fs::path(scratch.path()) / "out.json").string();
  write_file_atomic(path, "old\n");
  {
    FileSizeLimit limit(4096);
    try {
      write_file_atomic(path, std::string(10000, 'x'));
      ADD_FAILURE() << "the write past the limit succeeded";
    } catch (const EnvironmentError& e) {
      EXPECT_EQ(std::string(e.what()), path + ": write failed: File too large");
    }
  }
  EXPECT_EQ(read_file(path), "old\n");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(scratch.path())) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"out.json"});
}

class IoFailureTrainTest : public test_util::TinyRun<IoFailureTrainTest> {
 public:
  static constexpr const char* kName = "safetune_io_failure";
  // Full fine-tuning: a checkpoint's weights are far larger than the run's small files.
  static std::vector<std::string> overrides(const std::string&) {
    return {"lora.enabled=false", "train.max_steps=6", "train.save_every=2", "train.batch_size=2"};
  }
};

TEST_F(IoFailureTrainTest, AFailedCheckpointLeavesTheLastGoodOneAndResumesExactly) {
  train::run_training(config("straight"), quiet());
  const fs::path run = fs::path(root_) / "failed";
  // From step 3 on, no file may grow past 32 KiB: the metrics and the config still fit,
  // the step-4 checkpoint's weights do not.
  std::unique_ptr<FileSizeLimit> limit;
  train::TrainOptions o = quiet();
  o.on_loss_terms = [&](int64_t step, train::StepLoss&) {
    if (step == 3 && !limit) limit = std::make_unique<FileSizeLimit>(32 << 10);
  };
  std::string message;
  try {
    train::run_training(config("failed"), o);
  } catch (const EnvironmentError& e) {
    message = e.what();
  }
  limit.reset();
  EXPECT_NE(message.find(".tmp-step-00000004/"), std::string::npos) << message;
  EXPECT_NE(message.find("File too large (checkpoint of step 4 not saved; train.resume=auto continues from "
                         "checkpoints/step-00000002)"),
            std::string::npos)
      << message;
  EXPECT_FALSE(fs::exists(run / "checkpoints" / ".tmp-step-00000004"));
  EXPECT_EQ(read_file((run / "latest").string()), "checkpoints/step-00000002\n");
  for (const auto& e : fs::recursive_directory_iterator(run))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();

  train::TrainResult r = train::run_training(config("failed", {"train.resume=auto"}), quiet());
  EXPECT_EQ(r.steps, 6);
  const auto a = io::load_tensors(root_ + "/straight/model/model.safetensors");
  const auto b = io::load_tensors((run / "model" / "model.safetensors").string());
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(t.equal(b.at(name))) << name;
}

}  // namespace
}  // namespace safetune
