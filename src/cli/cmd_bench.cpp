// safetune bench: timed kernels and model passes. One sub-subcommand per benchmark, each
// a pair of functions (options, run) listed in kBenches at the bottom:
//   bench gemm     fp32 square matmul GFLOP/s (the machine's practical peak)
//   bench forward  model forward tokens/s, achieved GFLOP/s and MFU against bench gemm
//   bench step     one training step (logic in src/train/bench_step.cpp)
//   bench loss     fused vs unfused objective from hidden states (src/train/bench_loss.cpp)
//   bench allreduce  Gloo all-reduce bandwidth between processes (data parallelism)
// gemm, forward, step and loss also say which BLAS ran (library and version, OpenBLAS kernel set
// and how it was chosen, threads: core/blas_info.h), as a last line or, with --json, as
// the blas* members of their object.
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

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.h"
#include "model_cli.h"
#include "safetune/core/blas_info.h"
#include "safetune/core/threads.h"
#include "safetune/model/load.h"
#include "safetune/model/transformer.h"
#include "safetune/train/bench_loss.h"
#include "safetune/train/bench_step.h"
#include "safetune/train/config.h"
#include "safetune/dist/data_parallel.h"

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

// The BLAS library, kernel set and thread count the numbers were measured with, as JSON
// members to append to a benchmark's object (called after the threads are set).
std::string blas_fields() {
  const safetune::BlasInfo b = safetune::blas_info();
  auto q = [](const std::string& s) { return nlohmann::json(s).dump(); };
  return ", \"blas\": " + q(b.library) + ", \"blas_core\": " + q(b.core) + ", \"blas_core_source\": " + q(b.source) +
         ", \"blas_core_detected\": " + q(b.detected) + ", \"blas_coretype\": " + q(b.coretype) +
         ", \"blas_threads\": " + std::to_string(b.threads);
}

void print_blas_line() { std::printf("blas: %s\n", safetune::describe_blas(safetune::blas_info()).c_str()); }

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
  const int threads = set_compute_threads(0);
  if (o.size < 1 || o.size > 32768) input_error("--size", "must be in [1, 32768]");
  if (o.iters < 1) input_error("--iters", "must be >= 1");
  const double g = gemm_gflops(o.size, o.iters, cli::parse_device(o.device));
  if (o.json) {
    std::printf("{\"gflops\": %.2f, \"size\": %lld, \"threads\": %d%s}\n", g, (long long)o.size, threads,
                blas_fields().c_str());
  } else {
    std::printf("fp32 gemm %lld^3: %.2f GFLOP/s (%d threads, best of %d)\n", (long long)o.size, g, threads, o.iters);
    print_blas_line();
  }
  return 0;
}

void setup_gemm(CLI::App& app, std::shared_ptr<GemmOpts> o) {
  app.add_option("--size", o->size, "matrix size N (N x N times N x N)")->capture_default_str();
  app.add_option("--iters", o->iters, "timed runs (best is kept)")->capture_default_str();
  app.add_option("--device", o->device, "cpu | cuda")->capture_default_str();
  app.add_flag("--json", o->json,
               "one JSON object: gflops, size, threads, blas (library and version), blas_core (kernel set), ...");
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
  const int threads = set_compute_threads(0);
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
        "\"logits\": %s, \"threads\": %d, \"dtype\": \"%s\"%s}\n",
        tokens / t, t, achieved, gemm, mfu, (long long)p_total, (long long)p_matmul, flops / 1e9, (long long)o.batch,
        (long long)o.seq, o.no_logits ? "false" : "true", threads, c10::toString(m->dtype()), blas_fields().c_str());
  } else {
    std::printf("forward %lldx%lld (%s): %.4f s, %.1f tokens/s, %.2f GFLOP/s of %.2f (gemm) = MFU %.1f%%\n",
                (long long)o.batch, (long long)o.seq, o.no_logits ? "hidden states" : "with logits", t, tokens / t,
                achieved, gemm, 100 * mfu);
    std::printf("params %lld (matmul %lld), %.3f GFLOP per forward, %d threads\n", (long long)p_total,
                (long long)p_matmul, flops / 1e9, threads);
    print_blas_line();
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
  std::string trace;
  bool json = false;
};

int run_step(const StepOpts& o) {
  using namespace safetune;
  if (o.config.empty()) input_error("bench step", "give --config FILE");
  train::RunConfig cfg = train::load_run_config(o.config, o.overrides);
  auto r = train::bench_step(cfg, o.steps, o.warmup,
                             [&] { return o.gemm > 0 ? o.gemm : gemm_gflops(o.gemm_size, 5, c10::Device(c10::kCPU)); },
                             o.prompt, o.trace);
  if (o.json) {
    std::printf("{\"step_ms\": %.2f, \"tokens_per_s\": %.1f, \"mfu\": %.4f, \"peak_rss_mb\": %.1f, \"peak_mem_mb\": %.1f, \"step_ms_min\": %.2f, "
                "\"tokens_per_step\": %lld, \"flops_per_token\": %.4g, \"gemm_gflops\": %.2f, \"trainable\": %lld, "
                "\"threads\": %d, \"forward_ms\": %.2f, \"backward_ms\": %.2f, \"optimizer_ms\": %.2f%s}\n",
                r.step_ms, r.tokens_per_s, r.mfu, r.peak_rss_mb, r.peak_mem_mb, r.step_ms_min, (long long)r.tokens_per_step,
                r.flops_per_token, r.gemm_gflops, (long long)r.trainable, r.threads, r.forward_ms, r.backward_ms, r.optimizer_ms,
                blas_fields().c_str());
  } else {
    std::printf("train step: %.2f ms (min %.2f), %.1f tokens/s, MFU %.1f%% of %.2f GFLOP/s (gemm), peak RSS %.1f MB\n",
                r.step_ms, r.step_ms_min, r.tokens_per_s, 100 * r.mfu, r.gemm_gflops, r.peak_rss_mb);
    print_blas_line();
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
  app.add_option("--trace", o->trace,
                 "write a Chrome trace (chrome://tracing, Perfetto) of the timed steps' ATen ops to this file");
  app.add_flag("--json", o->json,
               "one JSON object: step_ms, tokens_per_s, mfu, peak_rss_mb, peak_mem_mb (the device's), ..., blas, blas_core");
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

// ---------------------------------------------------------------------------- allreduce

// The gradient all-reduce of data-parallel training, alone: every rank sums a float32
// buffer of --mb MB with the others (c10d Gloo over TCP), in the trainer's buckets.
// Run under a launcher that sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT:
//   scripts/launch.sh -n 2 -- build/safetune bench allreduce
// Reported by rank 0: algorithm bandwidth = bytes / time, and bus bandwidth = algorithm
// bandwidth x 2 (W - 1) / W, what each process sends and receives in a ring all-reduce
// (the NCCL tests' convention, comparable across world sizes).
struct AllreduceOpts {
  double mb = 64;
  double bucket_mb = 25;
  int iters = 10, warmup = 2;
  double timeout = 120;
  bool json = false;
};

int run_allreduce(const AllreduceOpts& o) {
  using namespace safetune;
  if (!(o.mb > 0) || o.mb > 16384) input_error("--mb", "must be in (0, 16384]");
  if (!(o.bucket_mb > 0)) input_error("--bucket-mb", "must be positive");
  if (o.iters < 1 || o.warmup < 0) input_error("--iters", "must be >= 1 (and --warmup >= 0)");
  const dist::Env env = dist::env_from_environment();
  if (env.world_size < 2)
    input_error("bench allreduce", "needs WORLD_SIZE >= 2: run it under scripts/launch.sh -n 2 -- safetune bench allreduce");
  dist::DataParallel dp(env, o.timeout, "cpu", static_cast<int64_t>(o.bucket_mb * (1 << 20)));
  const int64_t n = static_cast<int64_t>(o.mb * (1 << 20) / 4);
  std::vector<at::Tensor> t{at::ones({n}, at::kFloat)};
  std::vector<double> times;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    dp.barrier("bench");
    const auto t0 = Clock::now();
    dp.all_reduce_sum(t);
    if (i >= o.warmup) times.push_back(seconds_since(t0));
  }
  // Sums of ones, warmup + iters times over: each element is W^(rounds).
  const double expect = std::pow(static_cast<double>(env.world_size), o.warmup + o.iters);
  const double got = t[0][n - 1].item<double>();
  if (std::abs(got - expect) > 1e-3 * expect) {
    std::fprintf(stderr, "safetune: bench allreduce: wrong sum %g (expected %g)\n", got, expect);
    return kExitInternal;
  }
  std::sort(times.begin(), times.end());
  const double med = times[times.size() / 2], best = times.front();
  const double bytes = 4.0 * n, W = env.world_size;
  const double algbw = bytes / med / 1e9, busbw = algbw * 2 * (W - 1) / W;
  if (env.rank == 0) {
    if (o.json)
      std::printf("{\"world_size\": %d, \"mb\": %.1f, \"ms\": %.2f, \"ms_min\": %.2f, \"algbw_gbs\": %.3f, "
                  "\"busbw_gbs\": %.3f}\n",
                  env.world_size, o.mb, 1e3 * med, 1e3 * best, algbw, busbw);
    else
      std::printf("all-reduce of %.1f MB fp32 over %d processes (Gloo, %.0f MB buckets): %.2f ms median (min %.2f), "
                  "algorithm bandwidth %.3f GB/s, bus bandwidth %.3f GB/s\n",
                  o.mb, env.world_size, o.bucket_mb, 1e3 * med, 1e3 * best, algbw, busbw);
  }
  return 0;
}

void setup_allreduce(CLI::App& app, std::shared_ptr<AllreduceOpts> o) {
  app.add_option("--mb", o->mb, "buffer size in MB (float32)")->capture_default_str();
  app.add_option("--bucket-mb", o->bucket_mb, "all-reduce bucket size in MB, as the trainer's")->capture_default_str();
  app.add_option("--iters", o->iters, "timed all-reduces (the median is reported)")->capture_default_str();
  app.add_option("--warmup", o->warmup, "untimed all-reduces first")->capture_default_str();
  app.add_option("--timeout", o->timeout, "seconds to wait for the other ranks")->capture_default_str();
  app.add_flag("--json", o->json, "one JSON object: world_size, mb, ms, algbw_gbs, busbw_gbs");
}

// ---------------------------------------------------------------------------- loss

struct LossOpts {
  safetune::train::BenchLossOptions b;
  int threads = 0;  // 0: every core
  bool json = false;
};

int run_loss(const LossOpts& lo) {
  using namespace safetune;
  const train::BenchLossOptions& o = lo.b;
  if (lo.threads < 0) input_error("--threads", "must be >= 0");
  const int threads = set_compute_threads(lo.threads);
  cli::keep_freed_memory();  // as the trainer does: both paths reuse freed heap memory
  const train::BenchLossResult r = train::bench_loss(o);
  if (lo.json) {
    // The five fields first, then the context.
    std::printf(
        "{\"fused_ms\": %.2f, \"unfused_ms\": %.2f, \"fused_peak_mb\": %.1f, \"unfused_peak_mb\": %.1f, "
        "\"max_abs_diff\": %.3g, \"fused_cpu_ms\": %.2f, \"unfused_cpu_ms\": %.2f, \"fused_loss\": %.6f, "
        "\"unfused_loss\": %.6f, \"tokens\": %lld, \"vocab\": %lld, "
        "\"hidden\": %lld, \"subset\": %lld, \"constraint\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", "
        "\"chunk\": %lld, \"train_weight\": %s, \"threads\": %d%s}\n",
        r.fused_ms, r.unfused_ms, r.fused_peak_mb, r.unfused_peak_mb, r.max_abs_diff, r.fused_cpu_ms, r.unfused_cpu_ms,
        r.fused_loss, r.unfused_loss,
        (long long)o.tokens, (long long)o.vocab, (long long)o.hidden, (long long)o.subset, o.constraint.c_str(),
        o.device.c_str(), o.dtype.c_str(), (long long)r.chunk, o.train_weight ? "true" : "false", threads,
        blas_fields().c_str());
  } else {
    std::printf("loss %s, N=%lld V=%lld d=%lld K=%lld, %s %s, chunk %lld, %d threads\n", o.constraint.c_str(),
                (long long)o.tokens, (long long)o.vocab, (long long)o.hidden, (long long)o.subset, o.device.c_str(),
                o.dtype.c_str(), (long long)r.chunk, threads);
    std::printf("fused   %9.2f ms (cpu %9.2f)  peak extra %9.1f MB  loss %.6f\n", r.fused_ms, r.fused_cpu_ms,
                r.fused_peak_mb, r.fused_loss);
    std::printf("unfused %9.2f ms (cpu %9.2f)  peak extra %9.1f MB  loss %.6f\n", r.unfused_ms, r.unfused_cpu_ms,
                r.unfused_peak_mb, r.unfused_loss);
    std::printf("fused/unfused: time %.3f, memory %.4f; max |diff| %.3g\n", r.fused_ms / r.unfused_ms,
                r.fused_peak_mb / std::max(r.unfused_peak_mb, 1e-9), r.max_abs_diff);
    print_blas_line();
  }
  return 0;
}

void setup_loss(CLI::App& app, std::shared_ptr<LossOpts> lo) {
  safetune::train::BenchLossOptions& o = lo->b;
  app.add_option("--tokens", o.tokens, "N: rows of hidden states")->capture_default_str();
  app.add_option("--vocab", o.vocab, "V: vocabulary size")->capture_default_str();
  app.add_option("--hidden", o.hidden, "d: hidden size")->capture_default_str();
  app.add_option("--subset", o.subset, "K: safety-token columns")->capture_default_str();
  app.add_option("--constraint", o.constraint, "pact | kl_full | anchor | none")->capture_default_str();
  app.add_option("--device", o.device, "cpu | cuda")->capture_default_str();
  app.add_option("--dtype", o.dtype, "fp32 | bf16: storage of H and W (losses in fp32)")->capture_default_str();
  app.add_option("--chunk", o.chunk, "rows per chunk of the fused op (0: <= 64 MiB of fp32 logits)")
      ->capture_default_str();
  app.add_flag("--train-weight", o.train_weight, "W trainable (full fine-tuning): its gradient too");
  app.add_option("--iters", o.iters, "timed runs of each path (best is kept)")->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed runs of each path first")->capture_default_str();
  app.add_option("--seed", o.seed, "random inputs")->capture_default_str();
  app.add_option("--threads", lo->threads, "intra-op threads (0: every core)")->capture_default_str();
  app.add_flag("--json", lo->json,
               "one JSON object: fused_ms, unfused_ms, fused_peak_mb, unfused_peak_mb, max_abs_diff, then context");
  app.footer(
      "Forward + backward of CE + lambda x constraint from hidden states H [N, d] and an lm_head W [V, d],\n"
      "fused (chunks of rows, gradients written during the forward, no [N, V] logits) against the same\n"
      "objective composed of torch ops on full logits (autograd). Random inputs: every tenth target\n"
      "ignored, the constraint on all N rows; pact with its gate (reference logits on S given);\n"
      "kl_full and anchor from the reference's hidden states and lm_head (the unfused path forms the\n"
      "reference's [N, V] logits from them, as the unfused trainer does). W is frozen (LoRA) unless\n"
      "--train-weight.\n"
      "Peak memory: the largest extra number of bytes live in LibTorch's allocator (c10 CPU allocator,\n"
      "or the CUDA caching allocator) during one forward + backward, counted from the allocation and\n"
      "free reports LibTorch sends to a registered c10::MemoryReportingInfoBase hook (the one its\n"
      "profiler uses), on the calling thread; not process RSS. Time: best wall time of --iters runs,\n"
      "with that run's process CPU time (fused_cpu_ms, unfused_cpu_ms; steadier on a loaded machine\n"
      "with --threads 1 and OPENBLAS_NUM_THREADS=1).\n"
      "max_abs_diff: the largest absolute difference in the total loss and the gradients of H (and W).\n"
      "--device cuda needs a LibTorch with CUDA.");
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
      {"loss", "fused vs unfused objective: time, peak memory, agreement", bench<LossOpts>(setup_loss, run_loss)},
      {"allreduce", "data-parallel gradient all-reduce bandwidth (under scripts/launch.sh)",
       bench<AllreduceOpts>(setup_allreduce, run_allreduce)},
  };
  return list;
}

safetune::cli::Command cmd("bench", "timed kernels and model passes (gemm, forward, step, loss)", [](CLI::App& sub) {
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
