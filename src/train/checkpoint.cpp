// Checkpoint directories: temp dir -> rename -> `latest` pointer; trainer state as JSON;
// the torch CPU generator state.
#include "safetune/train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"

namespace safetune::train {
namespace fs = std::filesystem;
using nlohmann::json;

std::string trainer_state_json(const TrainerState& s) {
  json j = {{"step", s.step},
            {"epoch", s.epoch},
            {"step_in_epoch", s.step_in_epoch},
            {"micro_step", s.micro_step},
            {"tokens", s.tokens},
            {"elapsed_s", s.elapsed_s},
            {"total_steps", s.total_steps},
            {"steps_per_epoch", s.steps_per_epoch},
            {"num_examples", s.num_examples}};
  return j.dump(2) + "\n";
}

TrainerState parse_trainer_state(const std::string& text, const std::string& where) {
  TrainerState s;
  try {
    json j = json::parse(text);
    s.step = j.at("step").get<int64_t>();
    s.epoch = j.at("epoch").get<int64_t>();
    s.step_in_epoch = j.at("step_in_epoch").get<int64_t>();
    s.micro_step = j.at("micro_step").get<int64_t>();
    s.tokens = j.at("tokens").get<int64_t>();
    s.elapsed_s = j.at("elapsed_s").get<double>();
    s.total_steps = j.at("total_steps").get<int64_t>();
    s.steps_per_epoch = j.at("steps_per_epoch").get<int64_t>();
    s.num_examples = j.at("num_examples").get<int64_t>();
  } catch (const json::exception& e) {
    input_error(where, std::string("malformed trainer state: ") + e.what());
  }
  return s;
}

std::string checkpoint_relpath(int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "checkpoints/step-%08lld", static_cast<long long>(step));
  return buf;
}

std::string begin_checkpoint(const std::string& run_dir, int64_t step) {
  const fs::path parent = fs::path(run_dir) / "checkpoints";
  fs::create_directories(parent);
  // Unique per process and attempt: a stale temp dir of a killed run is simply replaced.
  const fs::path tmp = parent / (".tmp-" + fs::path(checkpoint_relpath(step)).filename().string());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  return tmp.string();
}

std::string commit_checkpoint(const std::string& run_dir, const std::string& temp_dir, int64_t step) {
  const std::string rel = checkpoint_relpath(step);
  const fs::path final_path = fs::path(run_dir) / rel;
  if (fs::exists(final_path)) {
    // Same step saved before (a resumed run re-saving): move the old one aside first so
    // that `latest` never points at a missing directory for longer than one rename.
    const fs::path old = final_path.string() + ".old";
    fs::remove_all(old);
    fs::rename(final_path, old);
    fs::rename(temp_dir, final_path);
    fs::remove_all(old);
  } else {
    fs::rename(temp_dir, final_path);
  }
  write_file_atomic((fs::path(run_dir) / "latest").string(), rel + "\n");
  return final_path.string();
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  const fs::path pointer = fs::path(run_dir) / "latest";
  if (!fs::exists(pointer)) return std::nullopt;
  std::string rel = read_file(pointer.string());
  while (!rel.empty() && (rel.back() == '\n' || rel.back() == '\r' || rel.back() == ' ')) rel.pop_back();
  const fs::path dir = fs::path(run_dir) / rel;
  if (rel.empty() || !fs::is_directory(dir) || !fs::exists(dir / "trainer_state.json"))
    input_error(pointer.string(), "points to '" + rel + "', which is not a checkpoint directory");
  return dir.string();
}

at::Tensor cpu_rng_state() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state().clone();
}

void set_cpu_rng_state(const at::Tensor& state) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

void seed_cpu_rng(uint64_t seed) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
}

}  // namespace safetune::train
