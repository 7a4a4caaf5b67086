// Small fixtures shared by the unit tests.
#pragma once
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/io/hf_config.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/text/tokenizer.h"
#include "safetune/train/trainer.h"

namespace safetune::test_util {

// The safetune binary under test ($SAFETUNE_BIN, else the one in the build directory).
inline std::string safetune_bin() {
  const char* e = std::getenv("SAFETUNE_BIN");
  return e ? e : std::string(SAFETUNE_BINARY_DIR) + "/safetune";
}

// An empty directory under the system temp dir, named after `prefix` and this process.
inline std::string fresh_temp_dir(const std::string& prefix) {
  const auto dir = std::filesystem::temp_directory_path() / (prefix + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// A directory of one test file's scratch files, made empty at start and removed at exit.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix) : path_(fresh_temp_dir(prefix)) {}
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  // Writes `text` (bytes as they are) to `name` inside it, directories included; its path.
  std::string write(const std::string& name, const std::string& text) const {
    const std::filesystem::path p = std::filesystem::path(path_) / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

 private:
  std::string path_;
};

// The InputError message of f(), or "" when it throws none.
template <class F>
std::string input_error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// The standard output of a shell command, or "" when it fails.
inline std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (pclose(p) != 0) return "";
  return out;
}

// The project's python, with the references' modules (torch, numpy, sentencepiece,
// transformers, peft, tokenizers: scripts/requirements.txt): $SAFETUNE_PYTHON, else the
// .venv that scripts/setup.sh makes in the source tree.
inline const std::string kPython = [] {
  const char* e = std::getenv("SAFETUNE_PYTHON");
  return e && *e ? std::string(e) : std::string(SAFETUNE_SOURCE_DIR) + "/.venv/bin/python";
}();

// Why a reference cannot run: kPython lacks `modules`.
inline std::string python_missing(const std::string& modules) {
  return "needs " + kPython + " with " + modules +
         " (the environment of scripts/requirements.txt: run scripts/setup.sh or set SAFETUNE_PYTHON)";
}

// Whether kPython imports `modules` (e.g. "torch, numpy").
inline bool python_has(const std::string& modules) {
  static std::map<std::string, bool> known;
  auto it = known.find(modules);
  if (it == known.end())
    it = known.emplace(modules, run_command(kPython + " -c 'import " + modules + "; print(1)' 2>/dev/null") == "1\n")
             .first;
  return it->second;
}

// `safetune init` of a tiny Llama (vocab 300, hidden 32, 2 layers, GQA 4/2) into `out`,
// with extra flags (e.g. " --init-std 0.3"); the log goes to out + ".log". True on success.
inline bool init_tiny_llama(const std::string& out, const std::string& extra_flags = "") {
  const std::string cmd = safetune_bin() + " init --arch llama --out " + out +
                          " --vocab 300 --hidden 32 --layers 2 --heads 4 --kv-heads 2 --intermediate 64 --seed 1" +
                          extra_flags + " > " + out + ".log 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// `n` records "Name colour number i" -> answers[i mod 4], JSONL. The default answers, red /
// green / blue / black, are a task a tiny model learns in a few dozen steps.
inline void write_colour_records(const std::string& path, int n = 12,
                                 const std::vector<std::string>& answers = {"red", "green", "blue", "black"}) {
  std::ofstream f(path);
  for (int i = 0; i < n; ++i)
    f << nlohmann::json({{"instruction", "Name colour number " + std::to_string(i % 4)}, {"output", answers[i % 4]}})
             .dump()
      << "\n";
}

// Answers of several tokens, of different lengths, for the constraint's tests.
inline const std::vector<std::string>& phrase_answers() {
  static const std::vector<std::string> a = {"red and blue", "green", "blue sky today", "black"};
  return a;
}

// A tokens.json for the model in `model_dir` written by hand: the given ids with their
// pieces and weights spread in [-0.2, 1] (the first negative, so max(v, 0) drops it),
// shifted by `shift`.
inline void write_hand_tokens(const std::string& model_dir, const std::string& path, const std::vector<int64_t>& ids,
                              double shift = 0.0) {
  auto tok = text::load_tokenizer(model_dir);
  safety::SafetyTokens t;
  t.aligned_path = t.probe_path = model_dir;
  t.aligned_hash = t.probe_hash = safety::model_hash(model_dir);
  t.vocab_size = io::load_hf_config(model_dir).vocab_size;
  t.num_examples = 1;
  for (size_t i = 0; i < ids.size(); ++i) {
    safety::SafetyToken s;
    s.id = ids[i];
    s.piece = tok->id_to_piece(static_cast<int32_t>(ids[i]));
    s.weight = -0.2 + 1.2 * double(i) / double(ids.size() - 1) + shift;
    s.p_ref = 1.0 / double(i + 2);
    t.tokens.push_back(s);
  }
  safety::write_safety_tokens(path, t);
}

// What the constraint's suites train on: `n` records with phrase answers in
// root/train.jsonl, and a hand-written root/tokens.json for root/model.
inline void write_constraint_data(const std::string& root, int n) {
  write_colour_records(root + "/train.jsonl", n, phrase_answers());
  write_hand_tokens(root + "/model", root + "/tokens.json", {5, 17, 42, 99, 123, 250});
}

// The InputError message of parsing `json_text` as config.json; "" when it parses.
inline std::string hf_config_error(const std::string& json_text) {
  try {
    io::parse_hf_config(json_text, "config.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// A tiny config of one family: 2 layers, GQA (4 heads over 2), vocab 300; Qwen2 gets its
// q/k/v bias, Mistral and Phi-3 a sliding window of `window` tokens.
// Gemma 3 gets 3 layers, its window pattern 3 (local, local, global) and a local RoPE
// base of its own; Gemma 2 keeps its soft-caps (50 / 30) and a head_dim other than
// hidden / heads with query_pre_attn_scalar different from both.
inline io::ModelConfig tiny_model_config(const std::string& arch, int64_t window = 4) {
  io::ModelConfig c = io::decoder_config(arch, {300, 32, 48, arch == "gemma3" ? 3 : 2, 4, 2});
  if (arch == "mistral" || arch == "phi3" || c.traits().gemma_layout) c.sliding_window = window;
  if (arch == "gemma2") {
    c.head_dim = 16;
    c.query_pre_attn_scalar = 12;
    c.attn_logit_softcapping = 2.0;  // low enough to bend the tiny model's scores
  }
  if (arch == "gemma3") {
    c.sliding_window_pattern = 3;
    c.rope_local_base_freq = 100.0;
  }
  if (arch == "qwen3") c.head_dim = 12;
  return c;
}

// configs/tiny.yaml, the base of every test run.
inline std::string tiny_yaml() { return std::string(SAFETUNE_SOURCE_DIR) + "/configs/tiny.yaml"; }

// Training without a progress bar or signal handlers, optionally stopping after N steps.
inline train::TrainOptions quiet_training(int64_t stop_after = 0) {
  train::TrainOptions t;
  t.progress_tty = 0;
  t.handle_signals = false;
  t.stop_after_steps = stop_after;
  return t;
}

// One JSON value per line of a JSONL file (metrics.jsonl).
inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<nlohmann::json> v;
  std::string line;
  while (std::getline(in, line)) v.push_back(nlohmann::json::parse(line));
  return v;
}

// The fixture of the trainer-level suites: one tiny Llama made by `safetune init` and the
// suite's data in a temp directory shared by every test of the suite, and run configs of
// configs/tiny.yaml on them. A suite derives as `class XTest : public TinyRun<XTest>` and
// says what differs: kName (the temp directory's prefix, required), kInitFlags (extra
// `init` flags), write_data(root) (what it trains on, root/train.jsonl; default: 12 colour
// records) and overrides(root) (its own config overrides, before each test's).
template <class Suite>
class TinyRun : public ::testing::Test {
 protected:
  static constexpr const char* kInitFlags = " --init-std 0.3";
  static void write_data(const std::string& root) { write_colour_records(root + "/train.jsonl", 12); }
  static std::vector<std::string> overrides(const std::string& root) { return {}; }

  static void SetUpTestSuite() {
    root_ = fresh_temp_dir(Suite::kName);
    // A wide init (std 0.3): with HF's 0.02 the frozen random lm_head of so small a model
    // bounds what LoRA can learn to a few tenths of a nat.
    init_ok_ = init_tiny_llama(root_ + "/model", Suite::kInitFlags);
    if (init_ok_) Suite::write_data(root_);
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(root_); }
  void SetUp() override {
    if (!init_ok_) FAIL() << "safetune init failed (" << safetune_bin() << ")";
  }

  // configs/tiny.yaml with the suite's model, data and overrides, then `extra`.
  static train::RunConfig config(const std::string& out, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> o = {"model.path=" + root_ + "/model", "data.train=" + root_ + "/train.jsonl",
                                  "train.output_dir=" + root_ + "/" + out, "train.threads=1"};
    for (const std::string& kv : Suite::overrides(root_)) o.push_back(kv);
    o.insert(o.end(), extra.begin(), extra.end());
    return train::load_run_config(tiny_yaml(), o);
  }
  static train::TrainOptions quiet(int64_t stop_after = 0) { return quiet_training(stop_after); }
  // The metrics records of run directory `out`.
  static std::vector<nlohmann::json> metrics(const std::string& out) {
    return read_jsonl(root_ + "/" + out + "/metrics.jsonl");
  }

  static inline std::string root_;
  static inline bool init_ok_ = false;
};

}  // namespace safetune::test_util
