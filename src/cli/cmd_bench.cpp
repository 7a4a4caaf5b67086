// safetune bench: timed kernels and model passes. One sub-subcommand per benchmark, each
// a pair of functions (options, run) listed in kBenches at the bottom:
//   bench gemm     fp32 square matmul GFLOP/s (the machine's practical peak)
//   bench forward  model forward tokens/s, achieved GFLOP/s and MFU against bench gemm
//   bench step     one training step (logic in src/train/bench_step.cpp)
//
// FLOP counting (bench forward), per forward pass of B sequences of T tokens:
//   2 * P_matmul * B*T                 every weight matrix (q,k,v,o, gate,up,down, lm_head)
//                                      used once per token as a multiply-add
// + 4 * B * T^2 * (H * head_dim) * L   attention scores QK^T and probabilities x V, over
//                                      the full T x T square (as PaLM's MFU counts it)
// Embedding lookups, norms, RoPE, softmax and activations are not counted (they are
// memory-bound work that MFU by convention leaves out).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>

#include "command.h"
#include "model_cli.h"
#include "safetune/model/load.h"
#include "safetune/model/transformer.h"
#include "safetune/train/bench_step.h"
#include "safetune/train/config.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void sync(const c10::Device& dev) {
  // Work on CUDA is asynchronous: copying a scalar back waits for it.
  if (dev.is_cuda()) at::zeros({1}, at::TensorOptions().device(dev)).sum().item<float>();
}

// Best-of-`iters` time of fn() after `warmup` untimed runs.
template <class F>
double best_time(int warmup, int iters, const c10::Device& dev, F&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  sync(dev);
  double best = 1e300;
  for (int i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    fn();
    sync(dev);
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

// ---------------------------------------------------------------------------- gemm

struct GemmOpts {
  int64_t size = 2048;
  int iters = 5;
  std::string device = "cpu";
  bool json = false;
};

double gemm_gflops(int64_t n, int iters, const c10::Device& dev) {
  at::NoGradGuard no_grad;
  auto opts = at::TensorOptions().dtype(at::kFloat).device(dev);
  at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts), c = at::empty({n, n}, opts);
  double t = best_time(2, iters, dev, [&] { at::mm_out(c, a, b); });
  return 2.0 * n * n * n / t / 1e9;
}

int run_gemm(const GemmOpts& o) {
  using namespace safetune;
  const int threads = cli::use_all_cores();
  if (o.size < 1 || o.size > 32768) input_error("--size", "must be in [1, 32768]");
  if (o.iters < 1) input_error("--iters", "must be >= 1");
  const double g = gemm_gflops(o.size, o.iters, cli::parse_device(o.device));
  if (o.json) std::printf("{\"gflops\": %.2f, \"size\": %lld, \"threads\": %d}\n", g, (long long)o.size, threads);
  else std::printf("fp32 gemm %lld^3: %.2f GFLOP/s (%d threads, best of %d)\n", (long long)o.size, g, threads, o.iters);
  return 0;
}

void setup_gemm(CLI::App& app, std::shared_ptr<GemmOpts> o) {
  app.add_option("--size", o->size, "matrix size N (N x N times N x N)")->capture_default_str();
  app.add_option("--iters", o->iters, "timed runs (best is kept)")->capture_default_str();
  app.add_option("--device", o->device, "cpu | cuda")->capture_default_str();
  app.add_flag("--json", o->json, "print {\"gflops\": x}");
}

// ---------------------------------------------------------------------------- forward

struct ForwardOpts {
  std::string model, device = "cpu";
  bool init_25m = false, json = false, no_logits = false;
  int64_t batch = 8, seq = 256, gemm_size = 2048;
  int iters = 5, warmup = 1;
  double gemm = 0;  // GFLOP/s of bench gemm, measured here when not given
};

// The benchmark model: Llama-shaped, hidden 512, 8 layers of 8 heads, MLP 1376, vocab
// 32000 with tied embeddings: 25.3M parameters in the layers, 41.7M in all.
safetune::io::ModelConfig config_25m() {
  safetune::io::ModelConfig c;
  c.arch = "llama";
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = 32000;
  c.hidden_size = 512;
  c.intermediate_size = 1376;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 8;
  c.head_dim = 64;
  c.max_position_embeddings = 2048;
  c.tie_word_embeddings = true;
  return c;
}

int run_forward(const ForwardOpts& o) {
  using namespace safetune;
  const int threads = cli::use_all_cores();
  cli::keep_freed_memory();
  if (o.model.empty() == !o.init_25m) input_error("bench forward", "give exactly one of --model and --init-25m");
  if (o.batch < 1 || o.seq < 1 || o.iters < 1 || o.warmup < 0) input_error("bench forward", "sizes must be positive");
  const c10::Device dev = cli::parse_device(o.device);
  std::shared_ptr<model::Transformer> m;
  if (o.init_25m) m = model::init_model(config_25m(), 0, dev);
  else m = model::load_model(o.model, dev).model;
  const auto& cfg = m->config();
  if (o.seq > cfg.max_position_embeddings)
    spdlog::warn("--seq {} exceeds max_position_embeddings {}", o.seq, cfg.max_position_embeddings);

  // Parameter counts: matrices used as matmuls (tied embeddings count once, as the lm_head).
  int64_t p_total = m->num_parameters(), p_matmul = 0;
  for (const auto& item : m->named_parameters())
    if (item.value().dim() == 2 && item.key() != "model.embed_tokens.weight") p_matmul += item.value().numel();
  if (!o.no_logits) p_matmul += m->lm_head ? 0 : m->lm_head_weight().numel();
  else if (m->lm_head) p_matmul -= m->lm_head->weight.numel();
  const double tokens = static_cast<double>(o.batch) * o.seq;
  const double attn = 4.0 * o.batch * double(o.seq) * o.seq * double(cfg.num_attention_heads * cfg.head_dim) *
                      cfg.num_hidden_layers;
  const double flops = 2.0 * p_matmul * tokens + attn;

  at::InferenceMode inference;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  at::Tensor ids = at::randint(0, cfg.vocab_size, {o.batch, o.seq}, gen, at::kLong).to(dev);
  double t = best_time(o.warmup, o.iters, dev, [&] {
    at::Tensor h = m->forward(ids);
    if (!o.no_logits) h = m->logits(h);
  });
  const double gemm = o.gemm > 0 ? o.gemm : gemm_gflops(o.gemm_size, 5, dev);
  const double achieved = flops / t / 1e9;
  const double mfu = achieved / gemm;
  if (o.json) {
    std::printf(
        "{\"tokens_per_s\": %.1f, \"seconds\": %.4f, \"gflops\": %.2f, \"gemm_gflops\": %.2f, \"mfu\": %.4f, "
        "\"params\": %lld, \"params_matmul\": %lld, \"forward_gflop\": %.3f, \"batch\": %lld, \"seq\": %lld, "
        "\"logits\": %s, \"threads\": %d, \"dtype\": \"%s\"}\n",
        tokens / t, t, achieved, gemm, mfu, (long long)p_total, (long long)p_matmul, flops / 1e9, (long long)o.batch,
        (long long)o.seq, o.no_logits ? "false" : "true", threads, c10::toString(m->dtype()));
  } else {
    std::printf("forward %lldx%lld (%s): %.4f s, %.1f tokens/s, %.2f GFLOP/s of %.2f (gemm) = MFU %.1f%%\n",
                (long long)o.batch, (long long)o.seq, o.no_logits ? "hidden states" : "with logits", t, tokens / t,
                achieved, gemm, 100 * mfu);
    std::printf("params %lld (matmul %lld), %.3f GFLOP per forward, %d threads\n", (long long)p_total,
                (long long)p_matmul, flops / 1e9, threads);
  }
  return 0;
}

void setup_forward(CLI::App& app, std::shared_ptr<ForwardOpts> o) {
  app.add_option("--model", o->model, "HF model directory");
  app.add_flag("--init-25m", o->init_25m, "a random Llama-shaped model: d=512, 8 layers, vocab 32000 (41.7M params)");
  app.add_option("--batch", o->batch, "sequences per forward")->capture_default_str();
  app.add_option("--seq", o->seq, "tokens per sequence")->capture_default_str();
  app.add_option("--iters", o->iters, "timed forwards (best is kept)")->capture_default_str();
  app.add_option("--warmup", o->warmup, "untimed forwards first")->capture_default_str();
  app.add_option("--gemm-gflops", o->gemm, "peak to compare with (default: measure bench gemm here)");
  app.add_option("--gemm-size", o->gemm_size, "matrix size of that gemm measurement")->capture_default_str();
  app.add_flag("--no-logits", o->no_logits, "time the hidden states only (no lm_head)");
  app.add_option("--device", o->device, "cpu | cuda")->capture_default_str();
  app.add_flag("--json", o->json, "one JSON object");
}

// ---------------------------------------------------------------------------- step

struct StepOpts {
  std::string config;
  std::vector<std::string> overrides;
  int steps = 5, warmup = 1;
  double gemm = 0;
  int64_t gemm_size = 2048;
  int64_t prompt = 0;
  bool json = false;
};

int run_step(const StepOpts& o) {
  using namespace safetune;
  if (o.config.empty()) input_error("bench step", "give --config FILE");
  train::RunConfig cfg = train::load_run_config(o.config, o.overrides);
  auto r = train::bench_step(cfg, o.steps, o.warmup,
                             [&] { return o.gemm > 0 ? o.gemm : gemm_gflops(o.gemm_size, 5, c10::Device(c10::kCPU)); },
                             o.prompt);
  if (o.json) {
    std::printf("{\"step_ms\": %.2f, \"tokens_per_s\": %.1f, \"mfu\": %.4f, \"peak_rss_mb\": %.1f, \"step_ms_min\": %.2f, "
                "\"tokens_per_step\": %lld, \"flops_per_token\": %.4g, \"gemm_gflops\": %.2f, \"trainable\": %lld, "
                "\"threads\": %d, \"forward_ms\": %.2f, \"backward_ms\": %.2f, \"optimizer_ms\": %.2f}\n",
                r.step_ms, r.tokens_per_s, r.mfu, r.peak_rss_mb, r.step_ms_min, (long long)r.tokens_per_step,
                r.flops_per_token, r.gemm_gflops, (long long)r.trainable, r.threads, r.forward_ms, r.backward_ms, r.optimizer_ms);
  } else {
    std::printf("train step: %.2f ms (min %.2f), %.1f tokens/s, MFU %.1f%% of %.2f GFLOP/s (gemm), peak RSS %.1f MB\n",
                r.step_ms, r.step_ms_min, r.tokens_per_s, 100 * r.mfu, r.gemm_gflops, r.peak_rss_mb);
  }
  return 0;
}

void setup_step(CLI::App& app, std::shared_ptr<StepOpts> o) {
  app.add_option("--config", o->config, "YAML run config (model, LoRA or full, batch_size x max_length)")->required();
  app.add_option("overrides", o->overrides, "key=value config overrides");
  app.add_option("--steps", o->steps, "timed steps (the median is reported)")->capture_default_str();
  app.add_option("--warmup", o->warmup, "untimed steps first")->capture_default_str();
  app.add_option("--gemm-gflops", o->gemm, "peak to compare with (default: measure bench gemm here)");
  app.add_option("--gemm-size", o->gemm_size, "matrix size of that gemm measurement")->capture_default_str();
  app.add_option("--prompt", o->prompt,
                 "the first N tokens of each row are an untrained prompt (0: every position after the first is trained)")
      ->capture_default_str();
  app.add_flag("--json", o->json, "one JSON object: step_ms, tokens_per_s, mfu, peak_rss_mb, ...");
  app.footer(
      "One training step (forward, loss, backward, clip, AdamW) on a random batch of train.batch_size x\n"
      "data.max_length tokens, every position trained (or those after --prompt N tokens).\n"
      "The objective.* overrides choose the constraint and its reference (objective.constraint=pact\n"
      "objective.tokens=FILE objective.reference=adapter_off|copy|cache); a safety constraint's\n"
      "post-only context is a 4-token header followed by the response; reference=cache serves\n"
      "rows precomputed for the batch from memory, as a cache file does.\n"
      "MFU = 6 x N_path x tokens/s / (bench gemm GFLOP/s), with the training FLOPs per token\n"
      "  full fine-tuning: 6 N_path = 6 N_matmul + 12 L T H d_head\n"
      "  LoRA:             6 N_path = 4 N_matmul + 6 N_lora + 12 L T H d_head\n"
      "N_matmul: weights used as matmuls (linears + lm_head, tied embeddings once), N_lora: adapter\n"
      "weights, L layers, T = data.max_length, H heads (attention over the full T x T square).");
}

// ---------------------------------------------------------------------------- registry

// One entry per benchmark: its name, help, and a setup returning the action to run.
struct Bench {
  const char* name;
  const char* help;
  std::function<std::function<int()>(CLI::App&)> setup;
};

template <class O>
std::function<std::function<int()>(CLI::App&)> bench(void (*setup)(CLI::App&, std::shared_ptr<O>),
                                                     int (*run)(const O&)) {
  return [setup, run](CLI::App& app) {
    auto o = std::make_shared<O>();
    setup(app, o);
    return std::function<int()>([o, run] { return run(*o); });
  };
}

const std::vector<Bench>& benches() {
  static const std::vector<Bench> list = {
      {"gemm", "fp32 square matmul GFLOP/s", bench<GemmOpts>(setup_gemm, run_gemm)},
      {"forward", "model forward tokens/s and MFU", bench<ForwardOpts>(setup_forward, run_forward)},
      {"step", "training step time, tokens/s and MFU", bench<StepOpts>(setup_step, run_step)},
  };
  return list;
}

safetune::cli::Command cmd("bench", "timed kernels and model passes (gemm, forward, step)", [](CLI::App& sub) {
  sub.require_subcommand(1);
  auto actions = std::make_shared<std::vector<std::pair<CLI::App*, std::function<int()>>>>();
  for (const Bench& b : benches()) {
    CLI::App* app = sub.add_subcommand(b.name, b.help);
    actions->emplace_back(app, b.setup(*app));
  }
  return [actions]() -> int {
    for (auto& [app, action] : *actions)
      if (app->parsed()) return action();
    return safetune::kExitBadInput;
  };
});

}  // namespace
