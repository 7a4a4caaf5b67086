// Non-finite steps: a NaN/Inf loss term is caught before the optimizer update, the step is
// skipped with a warning naming the term, and train.max_bad_steps bad steps in a row stop
// the run with exit code 3 and a checkpoint of the last good state. The bad values are
// injected through TrainOptions::on_loss_terms (a transient blow-up), or produced for real
// by a learning rate that overflows the weights (which stops the run at once).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include "safetune/core/log.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/io/tensor_io.h"
#include "safetune/train/config.h"
#include "safetune/train/trainer.h"
#include "test_util.h"

namespace safetune {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

class NonFiniteTest : public test_util::TinyRun<NonFiniteTest> {
 public:
  static constexpr const char* kName = "safetune_nonfinite";
  static constexpr const char* kInitFlags = "";
  static void write_data(const std::string& root) {
    std::ofstream f(root + "/train.jsonl");
    for (int i = 0; i < 16; ++i)
      f << json({{"instruction", "Count to " + std::to_string(i % 5)}, {"output", std::to_string(i % 5)}}).dump() << "\n";
  }
  static std::vector<std::string> overrides(const std::string&) {
    return {"train.save_every=0", "train.max_steps=8", "lora.dropout=0.1"};
  }

 protected:
  void SetUp() override {
    TinyRun::SetUp();
    // Capture the log (warnings name the bad terms).
    log_.str("");
    log::set_sink(&log_);
  }
  void TearDown() override { log::set_sink(nullptr); }

  // Sets the task loss (and so the total) to `value` at the given steps.
  static train::TrainOptions inject_ce(std::set<int64_t> steps, double value, int64_t stop_after = 0) {
    train::TrainOptions t = test_util::quiet_training(stop_after);
    t.on_loss_terms = [steps, value](int64_t step, train::StepLoss& terms) {
      if (!steps.count(step)) return;
      terms.ce = value;
      terms.total = value;
    };
    return t;
  }

  static std::string ckpt(const std::string& run, int64_t step) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "/checkpoints/step-%08lld/", static_cast<long long>(step));
    return root_ + "/" + run + buf;
  }

  std::ostringstream log_;
};


// Two files with the same bytes (checkpoints are written deterministically).
void expect_same_file(const std::string& a, const std::string& b) {
  EXPECT_TRUE(read_file(a) == read_file(b)) << a << " and " << b << " differ";
}

TEST_F(NonFiniteTest, BadStepsAreSkippedWithoutUpdate) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // A clean run stopped after step 2, and one whose steps 3 and 4 blow up, stopped after 4.
  auto clean = train::run_training(config("clean2"), test_util::quiet_training(2));
  ASSERT_EQ(clean.exit_code, 0);
  auto bad = train::run_training(config("skip"), inject_ce({3, 4}, nan, 4));
  ASSERT_EQ(bad.exit_code, 0);
  EXPECT_EQ(bad.steps, 4);
  // Neither skipped step changed the weights or the optimizer (moments and step count).
  expect_same_file(ckpt("clean2", 2) + "adapter_model.safetensors", ckpt("skip", 4) + "adapter_model.safetensors");
  expect_same_file(ckpt("clean2", 2) + "optimizer.safetensors", ckpt("skip", 4) + "optimizer.safetensors");
  // One warning per skipped step, naming the term.
  const std::string log = log_.str();
  EXPECT_NE(log.find("step 3: non-finite ce (nan); step skipped"), std::string::npos) << log;
  EXPECT_NE(log.find("step 4: non-finite ce (nan); step skipped, no update (2 in a row"), std::string::npos) << log;
  EXPECT_EQ(log.find("step 2: non-finite"), std::string::npos) << log;
  // The metrics record of a skipped step shows the bad value as null.
  auto m = test_util::read_jsonl(root_ + "/skip/metrics.jsonl");
  ASSERT_EQ(m.size(), 4u);
  EXPECT_TRUE(m[2]["loss"]["ce"].is_null());
  EXPECT_TRUE(m[1]["loss"]["ce"].is_number());

  // Resumed, the run goes on and finishes; the steps after the bad ones update again.
  log_.str("");
  auto rest = train::run_training(config("skip", {"train.resume=auto"}), test_util::quiet_training());
  ASSERT_EQ(rest.exit_code, 0);
  EXPECT_EQ(rest.steps, 8);
  EXPECT_TRUE(std::isfinite(rest.last_loss));
  EXPECT_EQ(log_.str().find("non-finite"), std::string::npos);
}

TEST_F(NonFiniteTest, TooManyBadStepsStopWithTheLastGoodCheckpoint) {
  const double inf = std::numeric_limits<double>::infinity();
  auto clean = train::run_training(config("clean3"), test_util::quiet_training(3));
  ASSERT_EQ(clean.exit_code, 0);
  // Steps 4.. are bad; with max_bad_steps 3 the run stops at step 6 with the state of step 3.
  auto r = train::run_training(config("stop", {"train.max_bad_steps=3"}),
                               inject_ce({4, 5, 6, 7, 8}, inf));
  EXPECT_EQ(r.exit_code, kExitNonFinite);
  EXPECT_EQ(r.steps, 3);
  EXPECT_TRUE(r.final_dir.empty());
  EXPECT_FALSE(fs::exists(root_ + "/stop/adapter"));
  EXPECT_EQ(read_file(root_ + "/stop/latest"), "checkpoints/step-00000003\n");
  const std::string log = log_.str();
  EXPECT_NE(log.find("step 6: non-finite ce (inf); step skipped, no update (3 in a row"), std::string::npos) << log;
  EXPECT_EQ(log.find("step 7:"), std::string::npos) << log;
  EXPECT_NE(log.find("3 steps in a row had a non-finite loss or gradient; stopped. Last good state (step 3)"),
            std::string::npos)
      << log;
  // The saved checkpoint is the clean run's step 3, weights, optimizer and RNG.
  for (const char* f : {"adapter_model.safetensors", "optimizer.safetensors", "rng.safetensors"})
    expect_same_file(ckpt("clean3", 3) + f, ckpt("stop", 3) + f);
  EXPECT_EQ(json::parse(read_file(ckpt("stop", 3) + "trainer_state.json"))["step"], 3);

  // Resuming retries the failed steps (here they are fine) and ends as a clean run does.
  auto rest = train::run_training(config("stop", {"train.resume=auto", "train.max_bad_steps=3"}),
                                  test_util::quiet_training());
  ASSERT_EQ(rest.exit_code, 0);
  auto straight = train::run_training(config("straight"), test_util::quiet_training());
  ASSERT_EQ(straight.exit_code, 0);
  expect_same_file(root_ + "/straight/adapter/adapter_model.safetensors",
                      root_ + "/stop/adapter/adapter_model.safetensors");
}

TEST_F(NonFiniteTest, OverflowingWeightsStopTheRunAtOnce) {
  // No injection: a learning rate this large (reached after a warm-up whose first step has
  // lr 0) overflows the adapter weights in the update of step 2. Step 3 is non-finite, and
  // skipping cannot help with broken weights: the run stops at once. The checkpoint of
  // step 2 was not written (its weights were not finite); `latest` names step 1's.
  auto r = train::run_training(config("overflow", {"optim.lr=3e38", "schedule.warmup_steps=2", "train.save_every=1",
                                                   "optim.grad_clip=0"}),
                               test_util::quiet_training());
  EXPECT_EQ(r.exit_code, kExitNonFinite);
  EXPECT_EQ(r.steps, 2);
  const std::string log = log_.str();
  EXPECT_NE(log.find("step 2: the weights are not finite; no checkpoint saved"), std::string::npos) << log;
  EXPECT_NE(log.find("step 3: non-finite "), std::string::npos) << log;
  EXPECT_NE(log.find("the weights are no longer finite (the update of step 2 overflowed); stopped"), std::string::npos)
      << log;
  EXPECT_EQ(log.find("step 4:"), std::string::npos) << log;
  EXPECT_EQ(read_file(root_ + "/overflow/latest"), "checkpoints/step-00000001\n");
  EXPECT_FALSE(fs::exists(ckpt("overflow", 2)));
  for (auto& [k, v] : io::load_tensors(ckpt("overflow", 1) + "adapter_model.safetensors"))
    EXPECT_TRUE(at::isfinite(v).all().item<bool>()) << k;
}

TEST_F(NonFiniteTest, MaxBadStepsIsAValidatedKey) {
  EXPECT_EQ(config("k").train.max_bad_steps, 5);
  EXPECT_EQ(config("k", {"train.max_bad_steps=2"}).train.max_bad_steps, 2);
  EXPECT_THROW(config("k", {"train.max_bad_steps=0"}), InputError);
  EXPECT_NE(train::config_reference().find("train.max_bad_steps"), std::string::npos);
}

}  // namespace
}  // namespace safetune
