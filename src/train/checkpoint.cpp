// Checkpoint directories: temp dir -> rename -> `latest` pointer; trainer state as JSON;
// the torch CPU generator state.
#include "safetune/train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include "safetune/core/log.h"
#include <vector>

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
  const EvalState& e = s.eval;
  j["eval"] = {{"first", e.first},
               {"best_score", e.best_score ? json(*e.best_score) : json(nullptr)},
               {"best_step", e.best_step},
               {"stopped", e.stopped},
               {"stop_reason", e.stop_reason}};
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
    if (j.contains("eval")) {  // absent in checkpoints of runs that did not evaluate
      const json& e = j.at("eval");
      s.eval.first = e.at("first").get<MetricValues>();
      if (!e.at("best_score").is_null()) s.eval.best_score = e.at("best_score").get<double>();
      s.eval.best_step = e.at("best_step").get<int64_t>();
      s.eval.stopped = e.at("stopped").get<bool>();
      s.eval.stop_reason = e.at("stop_reason").get<std::string>();
    }
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
  // One name per step: a temp dir that a killed run left for this step is replaced here,
  // those of other steps by clean_stale_temporaries() when the run resumes.
  const fs::path tmp = parent / (".tmp-" + fs::path(checkpoint_relpath(step)).filename().string());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  return tmp.string();
}

void discard_checkpoint(const std::string& temp_dir) {
  std::error_code ec;
  fs::remove_all(temp_dir, ec);
}

std::string commit_checkpoint(const std::string& run_dir, const std::string& temp_dir, int64_t step) {
  const std::string rel = checkpoint_relpath(step);
  const fs::path final_path = fs::path(run_dir) / rel;
  // Same step saved before (a resumed run re-saving): the old one is moved aside first
  // (step-N.old, which clean_stale_temporaries puts back after a kill), so that `latest`
  // never points at a missing directory for longer than one rename.
  replace_dir(temp_dir, final_path.string(), final_path.string() + ".old");
  write_file_atomic((fs::path(run_dir) / "latest").string(), rel + "\n");
  return final_path.string();
}

void prune_checkpoints(const std::string& run_dir, int64_t keep) {
  if (keep <= 0) return;
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(dir)) return;
  std::vector<std::string> steps;  // zero-padded names sort by step
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.size() == 13 && name.compare(0, 5, "step-") == 0 &&
        name.find_first_not_of("0123456789", 5) == std::string::npos)
      steps.push_back(name);
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + keep < steps.size(); ++i) fs::remove_all(dir / steps[i]);
}

namespace {

// The checkpoint path a `latest` file holds, without its line end. Only commit_checkpoint
// writes it; anything else (an edited or foreign file) must not send a resume outside the
// run directory.
std::string read_pointer(const fs::path& pointer) {
  std::string rel = read_file(pointer.string());
  while (!rel.empty() && (rel.back() == '\n' || rel.back() == '\r' || rel.back() == ' ')) rel.pop_back();
  const bool ok = rel.size() == 25 && rel.compare(0, 17, "checkpoints/step-") == 0 &&
                  rel.find_first_not_of("0123456789", 17) == std::string::npos;
  if (!ok) input_error(pointer.string(), "holds '" + rel + "', expected checkpoints/step-NNNNNNNN");
  return rel;
}

// "<base>.tmp", "<base>.tmp.<pid>", "<base>.old", "<base>.old.<pid>": the temporaries of
// AtomicFile, replace_dir and the final export for `base`.
bool is_temporary_of(const std::string& name, const std::string& base) {
  if (name.size() < base.size() + 4 || name.compare(0, base.size(), base) != 0) return false;
  std::string rest = name.substr(base.size());
  if (rest.compare(0, 4, ".tmp") != 0 && rest.compare(0, 4, ".old") != 0) return false;
  rest = rest.substr(4);
  if (rest.empty()) return true;
  return rest[0] == '.' && rest.size() > 1 && rest.find_first_not_of("0123456789", 1) == std::string::npos;
}

}  // namespace

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  const fs::path pointer = fs::path(run_dir) / "latest";
  if (!fs::exists(pointer)) return std::nullopt;
  const std::string rel = read_pointer(pointer);
  const fs::path dir = fs::path(run_dir) / rel;
  if (!fs::is_directory(dir) || !fs::exists(dir / "trainer_state.json"))
    input_error(pointer.string(), "points to '" + rel + "', which is not a checkpoint directory");
  return dir.string();
}

void clean_stale_temporaries(const std::string& run_dir) {
  std::error_code ec;
  const fs::path ck = fs::path(run_dir) / "checkpoints";
  // A kill between commit_checkpoint's two renames leaves step-N.old and no step-N; if
  // `latest` names step-N, the old copy is the checkpoint: put it back.
  const fs::path pointer = fs::path(run_dir) / "latest";
  if (fs::is_regular_file(pointer, ec)) {
    const std::string rel = read_pointer(pointer);
    const fs::path dir = fs::path(run_dir) / rel;
    const fs::path old = dir.string() + ".old";
    if (!fs::exists(dir, ec) && fs::exists(old / "trainer_state.json", ec)) {
      log::warn("{}: restoring {} from {}", run_dir, rel, old.filename().string());
      fs::rename(old, dir);
    }
  }
  std::vector<fs::path> stale;
  if (fs::is_directory(ck, ec))
    for (const auto& e : fs::directory_iterator(ck, ec)) {
      const std::string n = e.path().filename().string();
      if (n.rfind(".tmp-", 0) == 0 || (n.size() > 4 && n.compare(n.size() - 4, 4, ".old") == 0)) stale.push_back(e.path());
    }
  if (fs::is_directory(run_dir, ec))
    for (const auto& e : fs::directory_iterator(run_dir, ec)) {
      const std::string n = e.path().filename().string();
      for (const char* base : {"latest", "config.resolved.yaml", "metrics.jsonl", "adapter", "model", "best"})
        if (is_temporary_of(n, base)) stale.push_back(e.path());
    }
  for (const fs::path& p : stale) {
    log::info("{}: removing {}, left by an interrupted run", run_dir, p.lexically_relative(run_dir).string());
    fs::remove_all(p, ec);
  }
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

std::vector<std::pair<std::string, at::Tensor>> rng_states(const c10::Device& device) {
  std::vector<std::pair<std::string, at::Tensor>> out = {{"torch_cpu_generator", cpu_rng_state()}};
  if (device.is_cuda()) {
    at::Generator gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    out.emplace_back("torch_cuda_generator", gen.get_state().clone());
  }
  return out;
}

void set_rng_states(const std::map<std::string, at::Tensor>& states, const c10::Device& device,
                    const std::string& where) {
  auto need = [&](const char* name) -> const at::Tensor& {
    auto it = states.find(name);
    if (it == states.end()) input_error(where, std::string("missing ") + name);
    return it->second;
  };
  set_cpu_rng_state(need("torch_cpu_generator"));
  if (device.is_cuda()) {
    const at::Tensor& state = need("torch_cuda_generator");
    at::Generator gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
}

void seed_cpu_rng(uint64_t seed) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
}

}  // namespace safetune::train
