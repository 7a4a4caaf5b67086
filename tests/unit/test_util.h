// Small fixtures shared by the unit tests.
#pragma once
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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

// `safetune init` of a tiny Llama (vocab 300, hidden 32, 2 layers, GQA 4/2) into `out`,
// with extra flags (e.g. " --init-std 0.3"); the log goes to out + ".log". True on success.
inline bool init_tiny_llama(const std::string& out, const std::string& extra_flags = "") {
  const std::string cmd = safetune_bin() + " init --arch llama --out " + out +
                          " --vocab 300 --hidden 32 --layers 2 --heads 4 --kv-heads 2 --intermediate 64 --seed 1" +
                          extra_flags + " > " + out + ".log 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// `n` records "Name colour number i" -> red / green / blue / black (i mod 4), JSONL: a task
// a tiny model learns in a few dozen steps.
inline void write_colour_records(const std::string& path, int n = 12) {
  std::ofstream f(path);
  const char* colours[] = {"red", "green", "blue", "black"};
  for (int i = 0; i < n; ++i)
    f << nlohmann::json({{"instruction", "Name colour number " + std::to_string(i % 4)}, {"output", colours[i % 4]}})
             .dump()
      << "\n";
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

// A tiny config of one family: 2 layers, GQA (4 heads over 2), vocab 300; Qwen2 gets its
// q/k/v bias, Mistral a sliding window of `window` tokens.
inline io::ModelConfig tiny_model_config(const std::string& arch, int64_t window = 4) {
  io::ModelConfig c;
  c.arch = arch;
  c.architecture = arch == "llama" ? "LlamaForCausalLM" : arch == "qwen2" ? "Qwen2ForCausalLM" : "MistralForCausalLM";
  c.vocab_size = 300;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.attention_bias = arch == "qwen2";
  if (arch == "mistral") c.sliding_window = window;
  return c;
}

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

}  // namespace safetune::test_util
