// The training loop on a tiny model made by `safetune init` and a tiny dataset written
// here: the loss falls, a run stopped at step 10 and resumed ends bitwise identical to one
// that ran 20 steps straight (LoRA with dropout, and full fine-tuning), run-directory
// policy, and the checks made before the first step.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/io/tensor_io.h"
#include "safetune/train/config.h"
#include "safetune/train/evaluation.h"
#include "safetune/train/metrics.h"
#include "safetune/train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace safetune;
using nlohmann::json;

namespace {


// One tiny model and dataset for every test of this file.
class TrainerTest : public test_util::TinyRun<TrainerTest> {
 public:
  static constexpr const char* kName = "safetune_trainer";
  static void write_data(const std::string& root) {
    test_util::write_colour_records(root + "/train.jsonl", 12);
    test_util::write_hand_tokens(root + "/model", root + "/tokens.json", {5, 17, 42, 99, 123, 250});
    std::ofstream(root + "/empty.jsonl") << "";
    std::ofstream(root + "/suite.json") << "{}";  // read by the stand-in suite below: not at all
  }
};

// A suite whose refusal falls by 0.2 at each evaluation (1.0 at the first), and whose one
// slot per process says which evaluation this is, so that the trainer's sum over ranks is
// what metrics() sees.
class FallingRefusal : public train::SuiteEvaluation {
 public:
  size_t num_slots() const override { return 1; }
  std::vector<double> measure(const train::EvalModel& m, const train::EvalShare& share,
                              const train::EvalProgress&) override {
    EXPECT_NE(m.model, nullptr);
    EXPECT_NE(m.chat_template, nullptr);
    return {share.rank == 0 ? static_cast<double>(calls++) : 0.0};
  }
  train::MetricValues metrics(const std::vector<double>& slots) const override {
    return {{"refusal", 1.0 - 0.2 * slots[0]}};
  }
  int calls = 0;
};

// Every tensor of two safetensors files, bitwise.
void expect_same_tensors(const std::string& a, const std::string& b) {
  auto ta = io::load_tensors(a), tb = io::load_tensors(b);
  ASSERT_EQ(ta.size(), tb.size()) << a << " vs " << b;
  for (auto& [k, v] : ta) {
    ASSERT_TRUE(tb.count(k)) << k;
    EXPECT_TRUE(at::equal(v, tb.at(k))) << k << " differs between " << a << " and " << b;
  }
}

}  // namespace

TEST_F(TrainerTest, LossFallsAndRunDirectoryIsComplete) {
  auto r = train::run_training(config("fall", {"train.max_steps=40", "optim.lr=1e-2", "train.save_every=0"}), quiet());
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.steps, 40);
  auto m = metrics("fall");
  ASSERT_EQ(m.size(), 40u);  // log_every 1
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += m[i]["loss"]["ce"].get<double>() / 5;
    last += m[m.size() - 1 - i]["loss"]["ce"].get<double>() / 5;
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
  for (const char* k : {"step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed_s"})
    EXPECT_TRUE(m.back().contains(k)) << k;
  EXPECT_TRUE(m.back()["loss"].contains("total"));
  EXPECT_EQ(m.back()["step"], 40);
  const std::string dir = root_ + "/fall";
  EXPECT_TRUE(fs::exists(dir + "/adapter/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/adapter/adapter_config.json"));
  EXPECT_EQ(read_file(dir + "/latest"), "checkpoints/step-00000040\n");
  // The resolved config parses back to the same run.
  auto back = train::load_run_config(dir + "/config.resolved.yaml");
  EXPECT_TRUE(train::same_config(back, config("fall", {"train.max_steps=40", "optim.lr=1e-2", "train.save_every=0"})));
}

TEST_F(TrainerTest, ResumeIsBitwiseIdenticalLora) {
  // Dropout, shuffling, accumulation and a warm-up + cosine schedule: all of their state
  // must survive the restart.
  const std::vector<std::string> o = {"train.max_steps=20", "lora.dropout=0.1", "train.grad_accum=2",
                                      "train.batch_size=2", "schedule.type=cosine", "schedule.warmup_steps=3",
                                      "lora.target_modules=[q_proj,v_proj,down_proj]", "optim.weight_decay=0.01"};
  auto straight = train::run_training(config("straight", o), quiet());
  ASSERT_EQ(straight.steps, 20);
  auto first = train::run_training(config("resumed", o), quiet(10));
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.steps, 10);
  EXPECT_FALSE(fs::exists(root_ + "/resumed/adapter"));
  // Without resume, the directory is refused.
  EXPECT_THROW(train::run_training(config("resumed", o), quiet()), InputError);
  // With a different config, resuming is refused too.
  auto changed = o;
  changed.push_back("optim.lr=5e-4");
  changed.push_back("train.resume=auto");
  EXPECT_THROW(train::run_training(config("resumed", changed), quiet()), InputError);
  auto with_resume = o;
  with_resume.push_back("train.resume=auto");
  auto second = train::run_training(config("resumed", with_resume), quiet());
  EXPECT_FALSE(second.interrupted);
  EXPECT_EQ(second.steps, 20);

  const std::string a = root_ + "/straight/checkpoints/step-00000020/", b = root_ + "/resumed/checkpoints/step-00000020/";
  expect_same_tensors(a + "adapter_model.safetensors", b + "adapter_model.safetensors");
  expect_same_tensors(a + "optimizer.safetensors", b + "optimizer.safetensors");
  expect_same_tensors(a + "rng.safetensors", b + "rng.safetensors");
  expect_same_tensors(root_ + "/straight/adapter/adapter_model.safetensors",
                      root_ + "/resumed/adapter/adapter_model.safetensors");
  // The losses logged after the restart are those of the straight run.
  auto ms = metrics("straight"), mr = metrics("resumed");
  ASSERT_EQ(ms.size(), mr.size());
  for (size_t i = 0; i < ms.size(); ++i) EXPECT_EQ(ms[i]["loss"]["total"], mr[i]["loss"]["total"]) << "step " << i + 1;
}

TEST_F(TrainerTest, ResumeIsBitwiseIdenticalFull) {
  const std::vector<std::string> o = {"train.max_steps=6", "lora.enabled=false", "optim.lr=1e-3",
                                      "schedule.type=linear", "optim.weight_decay=0.1"};
  ASSERT_EQ(train::run_training(config("full_straight", o), quiet()).steps, 6);
  ASSERT_TRUE(train::run_training(config("full_resumed", o), quiet(3)).interrupted);
  auto with_resume = o;
  with_resume.push_back("train.resume=auto");
  ASSERT_EQ(train::run_training(config("full_resumed", with_resume), quiet()).steps, 6);
  expect_same_tensors(root_ + "/full_straight/model/model.safetensors", root_ + "/full_resumed/model/model.safetensors");
  expect_same_tensors(root_ + "/full_straight/checkpoints/step-00000006/optimizer.safetensors",
                      root_ + "/full_resumed/checkpoints/step-00000006/optimizer.safetensors");
  // The exported model is a complete HF directory, tokenizer included.
  EXPECT_TRUE(fs::exists(root_ + "/full_straight/model/config.json"));
  EXPECT_TRUE(fs::exists(root_ + "/full_straight/model/tokenizer.json"));
  // Full fine-tuning changed the weights.
  auto base = io::load_tensors(root_ + "/model/model.safetensors");
  auto tuned = io::load_tensors(root_ + "/full_straight/model/model.safetensors");
  EXPECT_FALSE(at::equal(base.at("model.layers.0.mlp.up_proj.weight"), tuned.at("model.layers.0.mlp.up_proj.weight")));
}

TEST_F(TrainerTest, OverwriteReplacesTheRun) {
  ASSERT_EQ(train::run_training(config("over", {"train.max_steps=2"}), quiet()).steps, 2);
  EXPECT_THROW(train::run_training(config("over", {"train.max_steps=3"}), quiet()), InputError);
  auto r = train::run_training(config("over", {"train.max_steps=3", "train.overwrite=true"}), quiet());
  EXPECT_EQ(r.steps, 3);
  EXPECT_FALSE(fs::exists(root_ + "/over/checkpoints/step-00000002"));
  EXPECT_EQ(metrics("over").size(), 3u);
}

TEST_F(TrainerTest, KeepCheckpointsPrunesTheOldestAndResumesFromTheNewest) {
  const std::vector<std::string> o = {"train.max_steps=5", "train.save_every=1", "train.keep_checkpoints=2"};
  ASSERT_TRUE(train::run_training(config("keep", o), quiet(4)).interrupted);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(root_ + "/keep/checkpoints")) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"step-00000003", "step-00000004"}));
  // A resume may change how many are kept; it continues from step 4.
  auto with_resume = o;
  with_resume.back() = "train.keep_checkpoints=1";
  with_resume.push_back("train.resume=auto");
  auto r = train::run_training(config("keep", with_resume), quiet());
  EXPECT_EQ(r.steps, 5);
  left.clear();
  for (const auto& e : fs::directory_iterator(root_ + "/keep/checkpoints")) left.push_back(e.path().filename().string());
  EXPECT_EQ(left, (std::vector<std::string>{"step-00000005"}));
}

TEST_F(TrainerTest, BadInputBeforeTheFirstStep) {
  auto expect_input_error = [&](std::vector<std::string> o, const std::string& needle) {
    try {
      train::run_training(config("bad", o), quiet());
      ADD_FAILURE() << "no error for " << needle;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(root_ + "/bad/config.resolved.yaml")) << needle;
  };
  expect_input_error({"lora.r=17"}, "r <= 16");  // v_proj is 32 -> 16
  expect_input_error({"data.train=" + root_ + "/missing.jsonl"}, "missing.jsonl");
  expect_input_error({"data.train=" + root_ + "/empty.jsonl"}, "empty");
  expect_input_error({"objective.constraint=anchor"}, "objective.tokens");
  EXPECT_THROW(config("bad", {"optim.lr=0"}), InputError);
  EXPECT_THROW(config("bad", {"lora.target_modules=[q_proj,qkv]"}), InputError);
}

TEST_F(TrainerTest, ActivationCheckpointingGivesTheSameTraining) {
  // Same final weights, bit for bit, with each layer recomputed during backward.
  // LoRA with dropout (the recomputation must replay the masks) and full fine-tuning.
  const std::vector<std::vector<std::string>> modes = {
      {"train.max_steps=5", "lora.dropout=0.1", "lora.target_modules=[q_proj,v_proj,up_proj]"},
      {"train.max_steps=4", "lora.enabled=false", "optim.lr=1e-3"}};
  const char* files[] = {"adapter/adapter_model.safetensors", "model/model.safetensors"};
  for (size_t k = 0; k < modes.size(); ++k) {
    auto with = modes[k];
    with.push_back("train.activation_checkpointing=true");
    const std::string a = "ckpt_off_" + std::to_string(k), b = "ckpt_on_" + std::to_string(k);
    ASSERT_EQ(train::run_training(config(a, modes[k]), quiet()).exit_code, 0);
    ASSERT_EQ(train::run_training(config(b, with), quiet()).exit_code, 0);
    auto ta = io::load_tensors(root_ + "/" + a + "/" + files[k]), tb = io::load_tensors(root_ + "/" + b + "/" + files[k]);
    ASSERT_EQ(ta.size(), tb.size());
    double worst = 0;
    for (auto& [name, t] : ta) worst = std::max(worst, (t - tb.at(name)).abs().max().item<double>());
    // The recomputation runs the same kernels on the same inputs with the same dropout masks.
    EXPECT_EQ(worst, 0.0) << files[k];
    EXPECT_GT(ta.begin()->second.abs().max().item<double>(), 0) << files[k];
  }
}

// The trainer evaluates through the interface its caller hands it: at step 0, every
// eval_every steps; keep_best keeps the first (highest) refusal; early_stop ends the run at
// the first evaluation below half the first value, with its weights exported.
TEST_F(TrainerTest, EvaluatesThroughTheGivenSuiteKeepsTheBestAndStopsEarly) {
  train::TrainOptions o = quiet();
  auto suite = std::make_shared<FallingRefusal>();
  o.suite = suite;
  auto r = train::run_training(config("evaluated", {"train.max_steps=20", "train.eval_every=2",
                                                    "train.eval_suite=" + root_ + "/suite.json",
                                                    "train.keep_best=refusal:max", "train.early_stop=refusal<0.5x"}),
                               o);
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.early_stopped);
  EXPECT_EQ(r.steps, 6);  // refusal 1.0, 0.8, 0.6, then 0.4 < 0.5 at step 6
  EXPECT_EQ(suite->calls, 4);
  EXPECT_NE(r.stop_reason.find("refusal = 0.4 < 0.5, 0.5 x its first value 1 at step 6"), std::string::npos)
      << r.stop_reason;
  std::vector<int64_t> eval_steps;
  for (const json& rec : metrics("evaluated"))
    if (rec.value("kind", "") == "eval") eval_steps.push_back(rec["step"].get<int64_t>());
  EXPECT_EQ(eval_steps, (std::vector<int64_t>{0, 2, 4, 6}));
  const std::string dir = root_ + "/evaluated";
  EXPECT_EQ(json::parse(read_file(dir + "/best/eval.json"))["step"], 0);
  EXPECT_TRUE(fs::exists(dir + "/adapter/adapter_model.safetensors"));
  // The stop is in the checkpoint: a resume trains nothing more.
  auto again = train::run_training(config("evaluated", {"train.max_steps=20", "train.eval_every=2",
                                                        "train.eval_suite=" + root_ + "/suite.json",
                                                        "train.keep_best=refusal:max",
                                                        "train.early_stop=refusal<0.5x", "train.resume=auto"}),
                                   o);
  EXPECT_TRUE(again.early_stopped);
  EXPECT_EQ(suite->calls, 4);
  // A config naming a suite with no suite handed over: an error naming the key.
  train::TrainOptions none = quiet();
  try {
    train::run_training(config("no_suite", {"train.eval_every=2", "train.eval_suite=" + root_ + "/suite.json"}), none);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("train.eval_suite"), std::string::npos) << e.what();
  }
}

// The held-out loss under every constraint: the evaluation reads the objective's terms
// (the constraint's own ones too: pact's gate, safety_mass's four) and records val_ce.
TEST_F(TrainerTest, HeldOutLossUnderEveryConstraint) {
  for (const char* kind : {"none", "pact", "kl_full", "anchor", "safety_mass"}) {
    SCOPED_TRACE(kind);
    const std::string out = std::string("held_out_") + kind;
    auto r = train::run_training(config(out, {"train.max_steps=2", "train.eval_every=2", "train.save_every=0",
                                              "data.eval=" + root_ + "/train.jsonl",
                                              std::string("objective.constraint=") + kind,
                                              "objective.tokens=" + root_ + "/tokens.json"}),
                                 quiet());
    ASSERT_EQ(r.exit_code, 0);
    int evals = 0;
    for (const json& rec : metrics(out))
      if (rec.value("kind", "") == "eval") {
        ++evals;
        const json& m = rec["metrics"];
        ASSERT_TRUE(m.contains("val_ce")) << rec.dump();
        EXPECT_TRUE(std::isfinite(m["val_ce"].get<double>())) << rec.dump();
        EXPECT_EQ(m.contains("val_constraint"), std::string(kind) != "none") << rec.dump();
      }
    EXPECT_EQ(evals, 2);  // before step 1 and after step 2
  }
}

// A step's loss terms as the ranks sum them (the total first, then compute_objective's
// terms) and as metrics.jsonl logs them: by name, the constraint under its kind's.
TEST(StepLoss, FlatLayoutAndLoggedNames) {
  const std::vector<double> flat = {1.75, 1.5, 0.25, 0.5};
  const train::StepLoss pact = train::StepLoss::from_flat(loss::ConstraintKind::pact, flat);
  EXPECT_EQ(pact.ce, 1.5);
  EXPECT_EQ(pact.constraint, 0.25);
  EXPECT_EQ(pact.parts, std::vector<double>{0.5});
  EXPECT_EQ(pact.flat(), flat);
  train::StepMetrics m;
  m.loss = pact;
  auto loss_of = [&] { return nlohmann::json::parse(train::metrics_json(m))["loss"]; };
  EXPECT_EQ(loss_of(), nlohmann::json::parse(R"({"ce": 1.5, "pact": 0.25, "gate": 0.5, "total": 1.75})"));
  // A rank that ran no micro-batch learns the total alone; before that, nothing.
  m.loss = train::StepLoss::from_flat(loss::ConstraintKind::pact, {1.75});
  EXPECT_EQ(m.loss.flat(), std::vector<double>{1.75});
  EXPECT_EQ(loss_of(), nlohmann::json::parse(R"({"total": 1.75})"));
  m.loss = train::StepLoss::from_flat(loss::ConstraintKind::pact, {});
  EXPECT_TRUE(m.loss.flat().empty());
  EXPECT_EQ(loss_of(), nlohmann::json::object());
  // Without a constraint: ce and the total.
  m.loss = train::StepLoss::from_flat(loss::ConstraintKind::none, {2.0, 2.0});
  EXPECT_EQ(loss_of(), nlohmann::json::parse(R"({"ce": 2.0, "total": 2.0})"));
}
