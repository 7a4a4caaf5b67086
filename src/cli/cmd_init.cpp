// safetune init: a randomly initialised model of one of the families of io/model_family.h
// in HF layout (config.json, model.safetensors, and a byte-level tokenizer.json with 256 byte tokens and
// a few specials, so that text commands work on it). Tiny by default.
// The directory is built as DIR.tmp and renamed into place: nothing half-written remains.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "command.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/threads.h"
#include "safetune/io/hf_config.h"
#include "safetune/model/load.h"

namespace {

namespace fs = std::filesystem;
using safetune::input_error;

struct Opts {
  std::string arch, out, dtype = "f32", rope_scaling = "none";
  int64_t vocab = 512, hidden = 64, layers = 2, heads = 4, kv_heads = 2, head_dim = 0, intermediate = 172;
  int64_t max_pos = 512, sliding_window = 0, max_window_layers = 0;
  double init_std = 0.02, rope_theta = 0, rope_factor = 8.0, rope_low = 1.0, rope_high = 4.0, rms_eps = 0;
  int64_t rope_orig_max = 8192;
  // Gemma: 0 keeps the family's value (query_pre_attn_scalar: head_dim).
  double query_pre_attn_scalar = 0, attn_softcap = -1, final_softcap = -1, rope_local_base = 0;
  int64_t sliding_window_pattern = 0;
  uint64_t seed = 0;
  bool tie = false, attention_bias = false, force = false, init_test = false;
};

// GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100+.
std::string byte_token(int b) {
  auto printable = [](int c) { return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); };
  int cp = b;
  if (!printable(b)) {
    int n = 0;
    for (int c = 0; c < b; ++c) n += !printable(c);
    cp = 256 + n;
  }
  std::string s;  // UTF-8 of cp (< 0x800)
  if (cp < 0x80) s += static_cast<char>(cp);
  else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Specials after the 256 byte tokens, when the vocabulary has room.
const char* const kSpecials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"};

std::string tokenizer_json(int64_t vocab) {
  using nlohmann::json;
  json v = json::object();
  for (int b = 0; b < 256; ++b) v[byte_token(b)] = b;
  json added = json::array();
  for (int i = 0; i < 3 && 256 + i < vocab; ++i) {
    v[kSpecials[i]] = 256 + i;
    added.push_back({{"id", 256 + i}, {"content", kSpecials[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  json j = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer", byte_level},
            {"post_processor", nullptr},
            {"decoder", byte_level},
            {"model",
             {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
              {"vocab", v}, {"merges", json::array()}}}};
  return j.dump(1) + "\n";
}

std::string tokenizer_config_json(int64_t vocab, int64_t max_pos) {
  nlohmann::json j = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"model_max_length", max_pos},
                      {"clean_up_tokenization_spaces", false}};
  if (vocab > 257) {
    j["bos_token"] = kSpecials[0];
    j["eos_token"] = kSpecials[1];
  }
  if (vocab > 258) j["pad_token"] = kSpecials[2];
  return j.dump(2) + "\n";
}

safetune::io::ModelConfig make_config(const Opts& o) {
  const std::string w = "init";
  safetune::io::ModelConfig c = safetune::io::decoder_config(
      o.arch, {o.vocab, o.hidden, o.intermediate, o.layers, o.heads, o.kv_heads}, "--arch");
  if (o.vocab < 256) input_error("--vocab", "must be at least 256 (the byte tokens)");
  if (o.hidden < 2 || o.layers < 1 || o.heads < 1 || o.kv_heads < 1 || o.intermediate < 1 || o.max_pos < 1)
    input_error("init", "sizes must be positive");
  if (o.heads % o.kv_heads != 0) input_error("--kv-heads", "--heads must be a multiple of --kv-heads");
  if (o.head_dim > 0) c.head_dim = o.head_dim;
  else if (o.hidden % o.heads != 0)
    input_error("--heads", "--hidden must be a multiple of --heads unless --head-dim is given");
  if (c.head_dim % 2) input_error("--head-dim", "head dimension must be even");
  c.max_position_embeddings = o.max_pos;
  if (o.rms_eps > 0) c.rms_norm_eps = o.rms_eps;      // else the family's
  if (o.rope_theta > 0) c.rope_theta = o.rope_theta;  // else the family's
  c.rope_scaling.type = o.rope_scaling;
  if (o.rope_scaling != "none" && o.rope_scaling != "linear" && o.rope_scaling != "llama3")
    input_error("--rope-scaling", "must be none, linear or llama3");
  c.rope_scaling.factor = o.rope_factor;
  c.rope_scaling.low_freq_factor = o.rope_low;
  c.rope_scaling.high_freq_factor = o.rope_high;
  c.rope_scaling.original_max_position_embeddings = o.rope_orig_max;
  c.tie_word_embeddings = c.tie_word_embeddings || o.tie;  // Gemma's are always tied
  const safetune::io::FamilyTraits& f = c.traits();
  auto only_if = [&](bool given, bool applies, const char* flag, const char* what) {
    if (given && !applies) input_error(flag, std::string("does not apply to ") + f.architecture + " (" + what + ")");
  };
  only_if(o.attention_bias, f.bias == safetune::io::BiasRule::kAttention || f.bias == safetune::io::BiasRule::kAttentionQkv,
          "--attention-bias", "its biases are fixed");
  c.attention_bias = c.attention_bias || o.attention_bias;  // Qwen2's are always there
  using safetune::io::WindowRule;
  only_if(o.sliding_window > 0, f.window != WindowRule::kNone, "--sliding-window", "no sliding window");
  if (o.sliding_window > 0) c.sliding_window = o.sliding_window;
  only_if(o.max_window_layers > 0, f.window == WindowRule::kUpperLayers, "--max-window-layers", "no upper-layer window");
  if (f.window == WindowRule::kUpperLayers && c.sliding_window) c.max_window_layers = o.max_window_layers;
  const char* gemma = "Gemma's query scale and soft-caps";
  only_if(o.query_pre_attn_scalar != 0, f.reads_softcaps, "--query-pre-attn-scalar", gemma);
  only_if(o.attn_softcap >= 0, f.reads_softcaps, "--attn-softcap", gemma);
  only_if(o.final_softcap >= 0, f.reads_softcaps, "--final-softcap", gemma);
  if (f.reads_softcaps) c.query_pre_attn_scalar = o.query_pre_attn_scalar > 0 ? o.query_pre_attn_scalar : double(c.head_dim);
  auto cap = [](double v) { return v > 0 ? std::optional<double>(v) : std::nullopt; };
  if (o.attn_softcap >= 0) c.attn_logit_softcapping = cap(o.attn_softcap);
  if (o.final_softcap >= 0) c.final_logit_softcapping = cap(o.final_softcap);
  only_if(o.rope_local_base > 0, f.local_rope, "--rope-local-base", "one RoPE base");
  if (o.rope_local_base > 0) c.rope_local_base_freq = o.rope_local_base;
  only_if(o.sliding_window_pattern > 0, f.window == WindowRule::kPatternLayers, "--sliding-window-pattern",
          "no layer pattern");
  if (o.sliding_window_pattern > 0) c.sliding_window_pattern = o.sliding_window_pattern;
  c.torch_dtype = safetune::model::torch_dtype_name(safetune::model::parse_torch_dtype(o.dtype, "--dtype"));
  if (o.vocab > 257) {
    c.bos_token_id = 256;
    c.eos_token_ids = {257};
  }
  return c;
}

bool dir_nonempty(const std::string& d) {
  std::error_code ec;
  return fs::is_directory(d, ec) && fs::directory_iterator(d, ec) != fs::directory_iterator();
}

int run(Opts o) {
  safetune::set_compute_threads(0);
  while (o.out.size() > 1 && o.out.back() == '/') o.out.pop_back();  // "DIR/" + ".tmp" must not nest
  if (o.out.empty()) input_error("--out", "empty path");
  const safetune::io::ModelConfig cfg = make_config(o);
  const at::ScalarType stored = safetune::model::parse_torch_dtype(o.dtype, "--dtype");
  std::error_code ec;
  if (fs::exists(o.out, ec) && !fs::is_directory(o.out, ec)) input_error(o.out, "exists and is not a directory");
  if (dir_nonempty(o.out) && !o.force) input_error(o.out, "directory is not empty (use --force to replace it)");

  const std::string tmp = o.out + ".tmp";
  fs::remove_all(tmp, ec);
  safetune::ensure_output_dir(tmp);
  try {
    auto model = std::make_shared<safetune::model::Transformer>(cfg, at::TensorOptions().dtype(at::kFloat));
    model->init_weights(o.seed, o.init_std, o.init_test);
    safetune::model::save_model(tmp, *model, stored);
    safetune::write_file_atomic((fs::path(tmp) / "tokenizer.json").string(), tokenizer_json(cfg.vocab_size));
    safetune::write_file_atomic((fs::path(tmp) / "tokenizer_config.json").string(),
                                tokenizer_config_json(cfg.vocab_size, cfg.max_position_embeddings));
    if (fs::exists(o.out, ec)) fs::remove_all(o.out);
    fs::rename(tmp, o.out);
    std::printf("wrote %s: %s, %lld parameters, %s\n", o.out.c_str(), cfg.architecture().c_str(),
                static_cast<long long>(model->num_parameters()), cfg.torch_dtype.c_str());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return 0;
}

safetune::cli::Command cmd("init", "write a randomly initialised model in HF layout (tiny by default)", [](CLI::App& sub) {
  auto o = std::make_shared<Opts>();
  sub.add_option("--arch", o->arch, safetune::io::family_names())->required();
  sub.add_option("--out", o->out, "output model directory")->required();
  sub.add_option("--vocab", o->vocab, "vocabulary size (>= 256)")->capture_default_str();
  sub.add_option("--hidden", o->hidden, "hidden size")->capture_default_str();
  sub.add_option("--layers", o->layers, "number of layers")->capture_default_str();
  sub.add_option("--heads", o->heads, "attention heads")->capture_default_str();
  sub.add_option("--kv-heads", o->kv_heads, "key/value heads (grouped-query attention)")->capture_default_str();
  sub.add_option("--head-dim", o->head_dim, "head dimension (default hidden / heads)");
  sub.add_option("--intermediate", o->intermediate, "MLP intermediate size")->capture_default_str();
  sub.add_option("--max-pos", o->max_pos, "max_position_embeddings")->capture_default_str();
  sub.add_option("--rms-eps", o->rms_eps, "rms_norm_eps (default: the family's)");
  sub.add_option("--rope-theta", o->rope_theta, "RoPE base (default: the family's)");
  sub.add_option("--rope-scaling", o->rope_scaling, "none | linear | llama3")->capture_default_str();
  sub.add_option("--rope-factor", o->rope_factor, "rope_scaling factor")->capture_default_str();
  sub.add_option("--rope-low-freq-factor", o->rope_low, "llama3 low_freq_factor")->capture_default_str();
  sub.add_option("--rope-high-freq-factor", o->rope_high, "llama3 high_freq_factor")->capture_default_str();
  sub.add_option("--rope-original-max-pos", o->rope_orig_max, "llama3 original_max_position_embeddings")
      ->capture_default_str();
  sub.add_option("--sliding-window", o->sliding_window,
                 "sliding window (mistral, qwen2, qwen3; gemma's local layers, default 4096 / 512); 0 = none / default");
  sub.add_option("--max-window-layers", o->max_window_layers, "qwen2, qwen3: layers below this index attend fully");
  sub.add_option("--query-pre-attn-scalar", o->query_pre_attn_scalar, "gemma: scores scaled by this^-1/2 (default head_dim)");
  sub.add_option("--attn-softcap", o->attn_softcap, "gemma: attn_logit_softcapping, 0 = off (default gemma2 50, gemma3 off)");
  sub.add_option("--final-softcap", o->final_softcap, "gemma: final_logit_softcapping, 0 = off (default gemma2 30, gemma3 off)");
  sub.add_option("--rope-local-base", o->rope_local_base, "gemma3: rope_local_base_freq of the sliding layers (default 10000)");
  sub.add_option("--sliding-window-pattern", o->sliding_window_pattern, "gemma3: every Nth layer is global (default 6)");
  sub.add_flag("--tie", o->tie, "tie the lm_head to the embeddings");
  sub.add_flag("--attention-bias", o->attention_bias, "llama: q/k/v/o biases (qwen2 always has q/k/v biases)");
  sub.add_option("--dtype", o->dtype, "stored weight dtype: f32 | bf16 | f16")->capture_default_str();
  sub.add_option("--init-std", o->init_std, "std of the normal initialisation (HF initializer_range)")
      ->capture_default_str();
  sub.add_flag("--init-test", o->init_test, "also randomise biases and norm weights (for parity tests)");
  sub.add_option("--seed", o->seed, "initialisation seed")->capture_default_str();
  sub.add_flag("--force", o->force, "replace a non-empty output directory");
  return [o]() { return run(*o); };
});

}  // namespace
