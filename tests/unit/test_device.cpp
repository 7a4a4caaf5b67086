// train.device: the names it accepts, the error for a GPU this LibTorch cannot reach
// (checked before anything is loaded), and the bf16 precision policy, tested on CPU:
// AdamW's fp32 master copy of a bf16 parameter follows the fp32 update exactly, and full
// fine-tuning with bf16 weights trains, checkpoints its master weights and resumes bitwise.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/io/tensor_io.h"
#include "safetune/train/checkpoint.h"
#include "safetune/train/config.h"
#include "safetune/core/device.h"
#include "safetune/train/optimizer.h"
#include "safetune/train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace safetune;

namespace {

using test_util::tiny_yaml;

// Output (stdout + stderr) and exit code of a shell command.
std::pair<std::string, int> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {"", -1};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

}  // namespace

TEST(Device, Names) {
  for (const char* ok : {"cpu", "auto", "cuda", "cuda:0", "cuda:7", "cuda:12"}) EXPECT_TRUE(is_device_name(ok)) << ok;
  for (const char* bad : {"", "CPU", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda0", "cuda:1:2", "mps", "cpu:0"})
    EXPECT_FALSE(is_device_name(bad)) << bad;
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  EXPECT_THROW(resolve_device("gpu"), InputError);
}

TEST(Device, ConfigKey) {
  // The default is cpu; any valid name parses; a bad one is refused by name.
  train::RunConfig c = train::load_run_config(tiny_yaml());
  EXPECT_EQ(c.train.device, "cpu");
  EXPECT_EQ(train::load_run_config(tiny_yaml(), {"train.device=cuda:1"}).train.device, "cuda:1");
  try {
    train::load_run_config(tiny_yaml(), {"train.device=gpu"});
    FAIL() << "train.device=gpu accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("train.device"), std::string::npos) << e.what();
  }
  // It survives the resolved YAML.
  train::RunConfig d = train::load_run_config(tiny_yaml(), {"train.device=auto"});
  EXPECT_TRUE(train::same_config(d, train::parse_run_config(train::to_yaml(d), "resolved")));
  EXPECT_NE(train::config_reference().find("train.device"), std::string::npos);
}

TEST(Device, AutoAndCudaWithoutGpu) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible: the no-CUDA path cannot be tested here";
  EXPECT_TRUE(resolve_device("auto").is_cpu());
  for (const char* name : {"cuda", "cuda:0", "cuda:3"}) {
    try {
      resolve_device(name);
      FAIL() << name << " accepted without CUDA";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("LibTorch has no CUDA"), std::string::npos) << e.what();
    }
  }
}

// The CLI: exit 2 and one error line, before the model (here: a directory that does not
// exist) or the data is looked at.
TEST(Device, TrainCudaFailsFirstWithoutGpu) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible";
  const std::string dir = test_util::fresh_temp_dir("safetune_device_cli");
  const auto [out, rc] = run(test_util::safetune_bin() + " train " + tiny_yaml() + " model.path=" + dir +
                             "/no-model data.train=" + dir + "/no-data.jsonl train.output_dir=" + dir +
                             "/run train.device=cuda");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_EQ(out.rfind("safetune: error: train.device: ", 0), 0u) << out;
  EXPECT_NE(out.find("LibTorch has no CUDA"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_FALSE(fs::exists(dir + "/run"));
  const auto [keys, krc] = run(test_util::safetune_bin() + " train --list-keys");
  EXPECT_EQ(krc, 0);
  EXPECT_NE(keys.find("train.device"), std::string::npos);
  fs::remove_all(dir);
}

// Updates smaller than half a bf16 ulp: a bf16 parameter updated in place would never
// move; with the fp32 master copy the master follows the fp32 run exactly and the
// parameter is its rounding.
TEST(Device, Bf16MasterWeightsFollowFp32) {
  train::AdamWOptions o;
  o.lr = 1e-3;  // Adam moves each weight by ~lr per step; bf16's ulp at 1 is 2^-7
  o.fused = false;
  at::Tensor p32 = at::ones({64}, at::kFloat).set_requires_grad(true);
  at::Tensor p16 = at::ones({64}, at::kBFloat16).set_requires_grad(true);
  train::AdamW a({p32}, o, {"w"}), b({p16}, o, {"w"});
  at::Tensor g = at::linspace(-1, 1, 64);
  for (int s = 0; s < 20; ++s) {
    p32.mutable_grad() = g.clone();
    p16.mutable_grad() = g.to(at::kBFloat16);  // what backward gives a bf16 parameter
    a.step();
    b.step();
  }
  at::Tensor master;
  for (const auto& [name, t] : b.state())
    if (name == "w.master") master = t;
  ASSERT_TRUE(master.defined()) << "no fp32 master for a bf16 parameter";
  EXPECT_EQ(master.scalar_type(), at::kFloat);
  for (const auto& [name, t] : a.state()) EXPECT_EQ(name.find(".master"), std::string::npos) << name;
  // The gradients differ only by their bf16 rounding, which Adam's normalisation cancels
  // (a constant gradient moves a weight by lr per step whatever its size): the master is
  // within float rounding of the fp32 run, and far from its start.
  EXPECT_LE((master - p32.detach()).abs().max().item<double>(), 1e-4);
  EXPECT_GT((p16.detach().to(at::kFloat) - 1).abs().max().item<double>(), 0.01) << "the bf16 weights did not move";
  EXPECT_TRUE(at::equal(p16.detach(), master.to(at::kBFloat16)));
  // A restored state brings the master back bit for bit.
  at::Tensor q16 = p16.detach().clone().set_requires_grad(true);
  train::AdamW c({q16}, o, {"w"});
  std::vector<std::pair<std::string, at::Tensor>> saved;
  for (const auto& [n, t] : b.state()) saved.emplace_back(n, t.clone());
  c.load_state(saved, "test");
  int restored = 0;
  for (const auto& [n, t] : c.state()) {
    if (n != "w.master") continue;
    ++restored;
    EXPECT_TRUE(at::equal(t, master));
  }
  EXPECT_EQ(restored, 1);
}

// Full fine-tuning of bf16 weights on CPU: the loss falls, the checkpoint carries the
// master weights, and a run stopped and resumed ends bitwise identical to a straight one.
class DeviceTrainTest : public test_util::TinyRun<DeviceTrainTest> {
 public:
  static constexpr const char* kName = "safetune_device_train";
  static std::vector<std::string> overrides(const std::string&) {
    return {"model.dtype=bf16", "lora.enabled=false", "train.device=cpu"};
  }
};

TEST_F(DeviceTrainTest, Bf16FullFineTuningTrains) {
  auto r = train::run_training(config("fall", {"train.max_steps=30", "optim.lr=3e-3", "train.save_every=0"}),
                               test_util::quiet_training());
  ASSERT_EQ(r.exit_code, 0);
  auto m = test_util::read_jsonl(root_ + "/fall/metrics.jsonl");
  ASSERT_EQ(m.size(), 30u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += m[i]["loss"]["ce"].get<double>() / 5;
    last += m[m.size() - 1 - i]["loss"]["ce"].get<double>() / 5;
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
  ASSERT_TRUE(m.back().contains("peak_mem_mb"));
  EXPECT_GT(m.back()["peak_mem_mb"].get<double>(), 1.0);  // the process's peak RSS on CPU
  // The checkpoint holds an fp32 master for every weight.
  auto opt = io::load_tensors(root_ + "/fall/checkpoints/step-00000030/optimizer.safetensors");
  int masters = 0;
  for (const auto& [k, t] : opt)
    if (k.size() > 7 && k.compare(k.size() - 7, 7, ".master") == 0) {
      ++masters;
      EXPECT_EQ(t.scalar_type(), at::kFloat) << k;
    }
  EXPECT_GT(masters, 0);
  auto w = io::load_tensors(root_ + "/fall/checkpoints/step-00000030/model.safetensors");
  EXPECT_EQ(masters, static_cast<int>(w.size()));
}

TEST_F(DeviceTrainTest, Bf16ResumeIsBitwise) {
  auto straight = train::run_training(config("straight", {"train.max_steps=8"}), test_util::quiet_training());
  ASSERT_EQ(straight.exit_code, 0);
  auto a = train::run_training(config("resumed", {"train.max_steps=8"}), test_util::quiet_training(4));
  ASSERT_TRUE(a.interrupted);
  auto b = train::run_training(config("resumed", {"train.max_steps=8", "train.resume=auto"}), test_util::quiet_training());
  ASSERT_EQ(b.exit_code, 0);
  for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
    auto x = io::load_tensors(root_ + "/straight/checkpoints/step-00000008/" + f);
    auto y = io::load_tensors(root_ + "/resumed/checkpoints/step-00000008/" + f);
    ASSERT_EQ(x.size(), y.size()) << f;
    for (const auto& [k, t] : x) {
      ASSERT_TRUE(y.count(k)) << k;
      EXPECT_TRUE(at::equal(t, y.at(k))) << f << ": " << k;
    }
  }
}

// bf16 adapters train on fp32 masters; the adapter written at the end (and in each
// checkpoint) is those masters, not their bf16 rounding. The learning rate is small
// enough that many updates are below half a bf16 ulp of the weight they change.
TEST_F(DeviceTrainTest, Bf16AdapterIsExportedFromMasters) {
  auto r = train::run_training(config("lora16", {"lora.enabled=true", "train.max_steps=6", "optim.lr=1e-4",
                                                 "train.save_every=0"}),
                               test_util::quiet_training());
  ASSERT_EQ(r.exit_code, 0);
  const std::string ckpt = root_ + "/lora16/checkpoints/step-00000006/";
  auto opt = io::load_tensors(ckpt + "optimizer.safetensors");
  std::vector<at::Tensor> masters;
  for (const auto& [k, t] : opt)
    if (k.size() > 7 && k.compare(k.size() - 7, 7, ".master") == 0) masters.push_back(t);
  for (const std::string& dir : {r.final_dir, ckpt}) {
    auto adapter = io::load_tensors(dir + "/adapter_model.safetensors");
    ASSERT_FALSE(adapter.empty()) << dir;
    ASSERT_EQ(adapter.size(), masters.size()) << dir << ": one fp32 master per adapter tensor";
    int not_bf16 = 0;
    for (const auto& [k, t] : adapter) {
      EXPECT_EQ(t.scalar_type(), at::kFloat) << k;
      // Each tensor is one of the masters, bit for bit (names aside: matched by value).
      bool found = false;
      for (const at::Tensor& m : masters) found = found || (m.sizes() == t.sizes() && at::equal(m, t));
      EXPECT_TRUE(found) << dir << ": " << k << " is not an fp32 master";
      if (!at::equal(t, t.to(at::kBFloat16).to(at::kFloat))) ++not_bf16;
    }
    EXPECT_GT(not_bf16, 0) << dir << ": every value is a bf16 value: the rounding was exported";
  }
}

// The generator states a checkpoint keeps: restoring them replays the same random draws
// (dropout masks). The CPU's always; a CUDA device's when training there (skipped
// without a GPU); a missing state is an input error naming the file.
void check_rng_round_trip(const c10::Device& dev) {
  auto saved = train::rng_states(dev);
  ASSERT_EQ(saved.size(), dev.is_cuda() ? 2u : 1u) << dev;
  const at::Tensor a = at::rand({1000}, at::TensorOptions().device(dev));
  train::set_rng_states({saved.begin(), saved.end()}, dev, "rng.safetensors");
  const at::Tensor b = at::rand({1000}, at::TensorOptions().device(dev));
  EXPECT_TRUE(at::equal(a, b)) << dev << ": restored state drew different numbers";
  const at::Tensor c = at::rand({1000}, at::TensorOptions().device(dev));
  EXPECT_FALSE(at::equal(b, c)) << dev;
  std::map<std::string, at::Tensor> partial(saved.begin(), saved.end());
  partial.erase(dev.is_cuda() ? "torch_cuda_generator" : "torch_cpu_generator");
  try {
    train::set_rng_states(partial, dev, "ckpt/rng.safetensors");
    ADD_FAILURE() << dev << ": a missing generator state was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt/rng.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Device, CpuRngStatesRoundTrip) { check_rng_round_trip(c10::Device(c10::kCPU)); }

TEST(Device, CudaRngStatesRoundTrip) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  check_rng_round_trip(c10::Device(c10::kCUDA, 0));
}
