// AdamW and gradient clipping against PyTorch's own implementation (run by the project's
// python, torch 2.x, on the same parameters and gradients), exact resume of the optimizer
// state, and the learning-rate schedules against their formulas evaluated by hand.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "safetune/core/error.h"
#include "safetune/io/tensor_io.h"
#include "safetune/train/optimizer.h"
#include "safetune/train/schedule.h"
#include "test_util.h"

using namespace safetune;
using namespace safetune::train;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) { return test_util::fresh_temp_dir("safetune_test_" + name); }

// A fixed problem: three parameters of different shapes, six steps of gradients whose
// scales straddle the clipping threshold, one parameter without a gradient at step 3,
// and a learning rate that changes every step.
struct Problem {
  std::vector<at::Tensor> init;
  std::vector<std::vector<at::Tensor>> grads;  // [step][param], undefined = no gradient
  std::vector<double> lrs = {1e-3, 2e-3, 5e-4, 1e-3, 3e-3, 1e-3};
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1, max_norm = 1.0;
};

Problem make_problem() {
  Problem pb;
  auto gen = at::detail::createCPUGenerator(1234);
  const std::vector<std::vector<int64_t>> shapes = {{5, 7}, {13}, {4, 3, 2}};
  for (const auto& s : shapes) pb.init.push_back(at::randn(s, gen));
  const double scales[] = {0.05, 0.3, 2.0, 0.01, 1.0, 0.08};
  for (int k = 0; k < 6; ++k) {
    std::vector<at::Tensor> g;
    for (size_t i = 0; i < shapes.size(); ++i)
      g.push_back(k == 3 && i == 1 ? at::Tensor() : at::randn(shapes[i], gen) * scales[k]);
    pb.grads.push_back(g);
  }
  return pb;
}

std::vector<at::Tensor> fresh_params(const std::vector<at::Tensor>& init) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& t : init) out.push_back(t.clone().set_requires_grad(true));
  return out;
}

// Steps [from, to) of the problem on `opt`; returns the norms clip_grad_norm reported.
std::vector<double> run_steps(const Problem& pb, AdamW& opt, int from, int to) {
  std::vector<double> norms;
  for (int k = from; k < to; ++k) {
    for (size_t i = 0; i < opt.params().size(); ++i) {
      at::Tensor p = opt.params()[i];
      if (pb.grads[k][i].defined()) p.mutable_grad() = pb.grads[k][i].clone();
      else p.mutable_grad().reset();
    }
    norms.push_back(clip_grad_norm(opt.params(), pb.max_norm));
    opt.set_lr(pb.lrs[k]);
    opt.step();
  }
  return norms;
}

AdamWOptions options_of(const Problem& pb, bool fused) {
  AdamWOptions o;
  o.beta1 = pb.beta1, o.beta2 = pb.beta2, o.eps = pb.eps, o.weight_decay = pb.weight_decay, o.fused = fused;
  return o;
}

}  // namespace

class AdamWVsTorch : public ::testing::TestWithParam<bool> {};

TEST_P(AdamWVsTorch, MatchesTorchOptimAdamWAndClipGradNorm) {
  if (!test_util::python_has("torch, numpy")) GTEST_FAIL() << test_util::python_missing("torch, numpy");
  const bool fused = GetParam();
  const Problem pb = make_problem();
  const fs::path dir = temp_dir(std::string("adamw_") + (fused ? "fused" : "ops"));

  std::vector<std::pair<std::string, at::Tensor>> in;
  for (size_t i = 0; i < pb.init.size(); ++i) in.emplace_back("param." + std::to_string(i), pb.init[i]);
  for (size_t k = 0; k < pb.grads.size(); ++k)
    for (size_t i = 0; i < pb.grads[k].size(); ++i)
      if (pb.grads[k][i].defined()) in.emplace_back("grad." + std::to_string(k) + "." + std::to_string(i), pb.grads[k][i]);
  std::string lrs;
  for (double lr : pb.lrs) lrs += (lrs.empty() ? "" : ",") + std::to_string(lr);
  auto num = [](double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", v);
    return std::string(b);
  };
  io::save_tensors((dir / "in.safetensors").string(), in,
                   {{"steps", std::to_string(pb.grads.size())}, {"lrs", lrs}, {"beta1", num(pb.beta1)},
                    {"beta2", num(pb.beta2)}, {"eps", num(pb.eps)}, {"weight_decay", num(pb.weight_decay)},
                    {"max_norm", num(pb.max_norm)}});
  const std::string script = std::string(SAFETUNE_SOURCE_DIR) + "/tests/reference/adamw_reference.py";
  const std::string cmd = test_util::kPython + " " + script + " " + (dir / "in.safetensors").string() + " " +
                          (dir / "out.safetensors").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto ref = io::load_tensors((dir / "out.safetensors").string());

  auto params = fresh_params(pb.init);
  AdamW opt(params, options_of(pb, fused));
  int clipped = 0;
  for (int k = 0; k < static_cast<int>(pb.grads.size()); ++k) {
    const double norm = run_steps(pb, opt, k, k + 1)[0];
    const double ref_norm = ref.at("total_norm")[k].item<double>();
    EXPECT_NEAR(norm, ref_norm, 1e-6 * ref_norm) << "step " << k;
    clipped += norm > pb.max_norm;
    for (size_t i = 0; i < params.size(); ++i) {
      const at::Tensor want = ref.at("param." + std::to_string(k) + "." + std::to_string(i));
      const double diff = (params[i].detach() - want).abs().max().item<double>();
      EXPECT_LE(diff, 1e-6) << "step " << k << " param " << i;
      // The comparison can fail: the parameters did move by far more than the tolerance.
      EXPECT_GT((want - pb.init[i]).abs().max().item<double>(), 1e-4);
    }
  }
  // The problem exercises both sides of the clipping threshold.
  EXPECT_GT(clipped, 0);
  EXPECT_LT(clipped, static_cast<int>(pb.grads.size()));
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Paths, AdamWVsTorch, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Fused" : "OpByOp"; });

// Stopping after 3 steps, saving the state, and continuing in a fresh optimizer gives
// bit-identical parameters and moments to running 6 steps straight.
TEST(AdamW, StateRestoreIsBitwise) {
  const Problem pb = make_problem();
  auto straight = fresh_params(pb.init);
  AdamW a(straight, options_of(pb, true), {"w", "b", "c"});
  run_steps(pb, a, 0, 6);

  auto first = fresh_params(pb.init);
  AdamW b(first, options_of(pb, true), {"w", "b", "c"});
  run_steps(pb, b, 0, 3);
  std::vector<std::pair<std::string, at::Tensor>> saved;
  for (const auto& [name, t] : b.state()) saved.emplace_back(name, t.clone());
  std::vector<at::Tensor> weights;
  for (const at::Tensor& p : first) weights.push_back(p.detach().clone());

  auto resumed = fresh_params(weights);
  AdamW c(resumed, options_of(pb, true), {"w", "b", "c"});
  c.load_state(saved, "ckpt");
  run_steps(pb, c, 3, 6);

  for (size_t i = 0; i < straight.size(); ++i) EXPECT_TRUE(at::equal(straight[i], resumed[i])) << i;
  const auto sa = a.state(), sc = c.state();
  ASSERT_EQ(sa.size(), sc.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sc[i].first);
    EXPECT_TRUE(at::equal(sa[i].second, sc[i].second)) << sa[i].first;
  }
  // Per-parameter step counts: "b" had no gradient at step 3.
  EXPECT_EQ(sa[2].second.item<int64_t>(), 6);
  EXPECT_EQ(sa[5].first, "b.step");
  EXPECT_EQ(sa[5].second.item<int64_t>(), 5);
}

TEST(AdamW, LoadStateRejectsMissingOrMisshapenEntries) {
  const Problem pb = make_problem();
  AdamW opt(fresh_params(pb.init), options_of(pb, true));
  auto state = opt.state();
  auto missing = state;
  missing.erase(missing.begin() + 1);
  try {
    opt.load_state(missing, "ckpt/optimizer.safetensors");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'0.exp_avg_sq'"), std::string::npos) << e.what();
  }
  auto wrong = state;
  wrong[0].second = at::zeros({7, 5});
  EXPECT_THROW(opt.load_state(wrong, "ckpt"), InputError);
}

// A bf16 parameter takes the op-by-op path with fp32 moments and stays close to the same
// update done in fp32.
TEST(AdamW, Bf16ParameterFollowsFp32) {
  const Problem pb = make_problem();
  auto p32 = fresh_params(pb.init);
  std::vector<at::Tensor> p16;
  for (const at::Tensor& t : pb.init) p16.push_back(t.to(at::kBFloat16).set_requires_grad(true));
  AdamW a(p32, options_of(pb, true)), b(p16, options_of(pb, true));
  run_steps(pb, a, 0, 6);
  run_steps(pb, b, 0, 6);
  for (const auto& [name, t] : b.state())
    if (name.find("exp_avg") != std::string::npos) {
      EXPECT_EQ(t.scalar_type(), at::kFloat);
    }
  for (size_t i = 0; i < p32.size(); ++i)
    EXPECT_LE((p16[i].detach().to(at::kFloat) - p32[i].detach()).abs().max().item<double>(), 2e-2);
}

// max_norm <= 0 measures without changing anything; the norm is the plain global L2 norm.
TEST(ClipGradNorm, MeasureOnly) {
  auto a = at::tensor({3.0f, 4.0f}).set_requires_grad(true);
  auto b = at::tensor({12.0f}).set_requires_grad(true);
  auto c = at::tensor({1.0f}).set_requires_grad(true);  // no gradient: ignored
  a.mutable_grad() = at::tensor({3.0f, 4.0f});
  b.mutable_grad() = at::tensor({12.0f});
  EXPECT_NEAR(clip_grad_norm({a, b, c}, 0.0), 13.0, 1e-6);
  EXPECT_TRUE(at::equal(a.grad(), at::tensor({3.0f, 4.0f})));
  EXPECT_NEAR(clip_grad_norm({a, b, c}, 6.5), 13.0, 1e-6);
  EXPECT_NEAR(a.grad()[1].item<double>(), 4.0 * 6.5 / (13.0 + 1e-6), 1e-6);
}

// ---- schedules: the transformers / torch formulas, evaluated by hand ---------------------

namespace {
double lr_of(const std::string& type, int64_t warmup, int64_t total, int64_t step, int64_t epoch = 0) {
  ScheduleConfig c;
  c.type = *parse_name<ScheduleType>(type);
  c.warmup_steps = warmup;
  return Schedule(c, 2e-4, total).lr(step, epoch);
}
}  // namespace

TEST(Schedule, Linear) {
  // get_linear_schedule_with_warmup(warmup=10, total=100)
  EXPECT_DOUBLE_EQ(lr_of("linear", 10, 100, 0), 0.0);
  EXPECT_DOUBLE_EQ(lr_of("linear", 10, 100, 5), 2e-4 * 0.5);
  EXPECT_DOUBLE_EQ(lr_of("linear", 10, 100, 10), 2e-4);
  EXPECT_DOUBLE_EQ(lr_of("linear", 10, 100, 55), 2e-4 * 45.0 / 90.0);
  EXPECT_DOUBLE_EQ(lr_of("linear", 10, 100, 99), 2e-4 * 1.0 / 90.0);
  EXPECT_DOUBLE_EQ(lr_of("linear", 10, 100, 100), 0.0);
  EXPECT_DOUBLE_EQ(lr_of("linear", 10, 100, 130), 0.0);
  EXPECT_DOUBLE_EQ(lr_of("linear", 0, 4, 0), 2e-4);
  EXPECT_DOUBLE_EQ(lr_of("linear", 0, 4, 3), 2e-4 * 0.25);
}

TEST(Schedule, Cosine) {
  // get_cosine_schedule_with_warmup(warmup=10, total=110, num_cycles=0.5)
  EXPECT_DOUBLE_EQ(lr_of("cosine", 10, 110, 3), 2e-4 * 0.3);
  EXPECT_DOUBLE_EQ(lr_of("cosine", 10, 110, 10), 2e-4);
  EXPECT_NEAR(lr_of("cosine", 10, 110, 35), 2e-4 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-18);  // progress 0.25
  EXPECT_NEAR(lr_of("cosine", 10, 110, 60), 2e-4 * 0.5, 1e-18);                            // progress 0.5
  EXPECT_NEAR(lr_of("cosine", 10, 110, 110), 0.0, 1e-18);
  EXPECT_DOUBLE_EQ(lr_of("cosine", 10, 110, 200), 2e-4 * 0.5 * (1 + std::cos(M_PI * 1.9)));  // 2nd cycle, as transformers
}

TEST(Schedule, ConstantAndStepLr) {
  EXPECT_DOUBLE_EQ(lr_of("constant", 0, 100, 0), 2e-4);
  EXPECT_DOUBLE_EQ(lr_of("constant", 4, 100, 1), 2e-4 * 0.25);
  EXPECT_DOUBLE_EQ(lr_of("constant", 4, 100, 50), 2e-4);
  // StepLR(step_size = 1 epoch, gamma = 0.85): lr x 0.85^epoch, whatever the step.
  EXPECT_DOUBLE_EQ(lr_of("step_lr", 0, 100, 0, 0), 2e-4);
  EXPECT_DOUBLE_EQ(lr_of("step_lr", 0, 100, 40, 1), 2e-4 * 0.85);
  EXPECT_DOUBLE_EQ(lr_of("step_lr", 0, 100, 90, 2), 2e-4 * 0.85 * 0.85);
  EXPECT_DOUBLE_EQ(lr_of("step_lr", 10, 100, 5, 0), 2e-4 * 0.5);
}
