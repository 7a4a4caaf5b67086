// safetune bench: timed kernels and model passes, one sub-subcommand per benchmark of the
// bench module (include/safetune/bench/), each a pair of functions (options, run) listed in
// kBenches at the bottom:
//   bench gemm       fp32 square matmul GFLOP/s (the machine's practical peak)
//   bench forward    model forward tokens/s, achieved GFLOP/s and MFU against bench gemm
//   bench step       one training step, set up as the trainer does
//   bench loss       fused vs unfused objective from hidden states
//   bench allreduce  Gloo all-reduce bandwidth between processes (data parallelism)
// gemm, forward, step and loss also say which BLAS ran (library and version, OpenBLAS kernel set
// and how it was chosen, threads: core/blas_info.h), as a last line or, with --json, as
// the blas* members of their object.
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "command.h"
#include "config_args.h"
#include "safetune/bench/allreduce.h"
#include "safetune/bench/forward.h"
#include "safetune/bench/gemm.h"
#include "safetune/bench/loss.h"
#include "safetune/bench/step.h"
#include "safetune/core/blas_info.h"
#include "safetune/core/build_info.h"
#include "safetune/core/device.h"
#include "safetune/core/error.h"
#include "safetune/core/memory.h"
#include "safetune/core/threads.h"
#include "safetune/io/model_family.h"
#include "safetune/loss/constraint_choices.h"
#include "safetune/train/config.h"

namespace {

// A benchmark's --json result: its members in the order they are documented (the
// measurements first, then the context).
using Result = nlohmann::ordered_json;

// `x` as printf's `format` (%.2f, %.4g) shows it: each number keeps the precision the
// results have always been given with. Not finite: null in the JSON.
double shown(const char* format, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, x);
  return std::strtod(buf, nullptr);
}

// The result as one line {"key": value, ...}, spaced as before nlohmann wrote the values:
// scripts/bench_forward.sh reads members with sed.
void print_result(const Result& r) {
  std::string line;
  for (const auto& [key, value] : r.items())
    line += (line.empty() ? "{" : ", ") + Result(key).dump() + ": " + value.dump();
  std::printf("%s}\n", line.c_str());
}

// The build and the BLAS library, kernel set and thread count the numbers were measured
// with, appended to a benchmark's result (called after the threads are set).
void add_blas_fields(Result& r) {
  const safetune::BlasInfo b = safetune::blas_info();
  const safetune::BuildInfo& build = safetune::build_info();
  r.update(Result{{"blas", b.name}, {"blas_core", b.core}, {"blas_threads", b.threads},
                  {"libtorch", build.libtorch}, {"cuda", build.cuda}, {"cuda_kernel_archs", build.kernel_archs}});
}

void print_blas_line() { std::printf("blas: %s\n", safetune::describe_blas(safetune::blas_info()).c_str()); }

// ---------------------------------------------------------------------------- gemm

struct GemmOpts {
  int64_t size = 2048;
  int iters = 5;
  std::string device = "cpu";
  bool json = false;
};

int run_gemm(const GemmOpts& o) {
  using namespace safetune;
  const int threads = set_compute_threads(0);
  if (o.size < 1 || o.size > 32768) input_error("--size", "must be in [1, 32768]");
  if (o.iters < 1) input_error("--iters", "must be >= 1");
  const double g = bench::gemm_gflops(o.size, o.iters, resolve_device(o.device, "--device"));
  if (o.json) {
    Result j = {{"gflops", shown("%.2f", g)}, {"size", o.size}, {"threads", threads}};
    add_blas_fields(j);
    print_result(j);
  } else {
    std::printf("fp32 gemm %lld^3: %.2f GFLOP/s (%d threads, best of %d)\n", (long long)o.size, g, threads, o.iters);
    print_blas_line();
  }
  return 0;
}

void setup_gemm(CLI::App& app, std::shared_ptr<GemmOpts> o) {
  app.add_option("--size", o->size, "matrix size N (N x N times N x N)")->capture_default_str();
  app.add_option("--iters", o->iters, "timed runs (best is kept)")->capture_default_str();
  app.add_option("--device", o->device, "cpu | cuda | cuda:N | auto")->capture_default_str();
  app.add_flag("--json", o->json,
               "one JSON object: gflops, size, threads, blas (library and version), blas_core (kernel set), ...");
}

// ---------------------------------------------------------------------------- forward

struct ForwardOpts {
  safetune::bench::ForwardOptions f;
  bool json = false, no_logits = false;
  int64_t gemm_size = 2048;
  double gemm = 0;  // GFLOP/s of bench gemm, measured here when not given
};

int run_forward(const ForwardOpts& fo) {
  using namespace safetune;
  const int threads = set_compute_threads(0);
  keep_freed_memory_for_reuse();
  bench::ForwardOptions o = fo.f;
  o.logits = !fo.no_logits;
  const bench::ForwardResult r = bench::bench_forward(o);
  const double t = r.seconds;
  const double gemm = fo.gemm > 0 ? fo.gemm : bench::gemm_gflops(fo.gemm_size, 5, resolve_device(o.device, "--device"));
  const double achieved = r.flops / t / 1e9;
  const double mfu = achieved / gemm;
  if (fo.json) {
    Result j = {{"tokens_per_s", shown("%.1f", r.tokens / t)}, {"seconds", shown("%.4f", t)},
                {"gflops", shown("%.2f", achieved)},         {"gemm_gflops", shown("%.2f", gemm)},
                {"mfu", shown("%.4f", mfu)},                 {"params", r.params},
                {"params_matmul", r.params_matmul},          {"forward_gflop", shown("%.3f", r.flops / 1e9)},
                {"batch", o.batch},                          {"seq", o.seq},
                {"logits", o.logits},                        {"threads", threads},
                {"dtype", r.dtype}};
    add_blas_fields(j);
    print_result(j);
  } else {
    std::printf("forward %lldx%lld (%s): %.4f s, %.1f tokens/s, %.2f GFLOP/s of %.2f (gemm) = MFU %.1f%%\n",
                (long long)o.batch, (long long)o.seq, o.logits ? "with logits" : "hidden states", t, r.tokens / t,
                achieved, gemm, 100 * mfu);
    std::printf("params %lld (matmul %lld), %.3f GFLOP per forward, %d threads\n", (long long)r.params,
                (long long)r.params_matmul, r.flops / 1e9, threads);
    print_blas_line();
  }
  return 0;
}

void setup_forward(CLI::App& app, std::shared_ptr<ForwardOpts> fo) {
  safetune::bench::ForwardOptions& o = fo->f;
  app.add_option("--model", o.model, "HF model directory");
  app.add_flag("--init-25m", o.init_25m, "a random Llama-shaped model: d=512, 8 layers, vocab 32000 (41.7M params)");
  app.add_option("--arch", o.arch, "--init-25m's family: " + safetune::io::family_names())
      ->capture_default_str();
  app.add_option("--batch", o.batch, "sequences per forward")->capture_default_str();
  app.add_option("--seq", o.seq, "tokens per sequence")->capture_default_str();
  app.add_option("--iters", o.iters, "timed forwards (best is kept)")->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed forwards first")->capture_default_str();
  app.add_option("--gemm-gflops", fo->gemm, "peak to compare with (default: measure bench gemm here)");
  app.add_option("--gemm-size", fo->gemm_size, "matrix size of that gemm measurement")->capture_default_str();
  app.add_flag("--no-logits", fo->no_logits, "time the hidden states only (no lm_head)");
  app.add_option("--device", o.device, "cpu | cuda | cuda:N | auto")->capture_default_str();
  app.add_flag("--json", fo->json, "one JSON object");
}

// ---------------------------------------------------------------------------- step

struct StepOpts : safetune::cli::ConfigArgs {
  int steps = 5, warmup = 1;
  double gemm = 0;
  int64_t gemm_size = 2048;
  int64_t prompt = 0;
  std::string trace;
  bool json = false;
};

int run_step(const StepOpts& o) {
  using namespace safetune;
  const train::RunConfig cfg = cli::load_config_args(o, "bench step", "give --config FILE", "train.batch_size=4");
  auto r = bench::bench_step(cfg, o.steps, o.warmup,
                             [&] { return o.gemm > 0 ? o.gemm : bench::gemm_gflops(o.gemm_size, 5, c10::Device(c10::kCPU)); },
                             o.prompt, o.trace);
  if (o.json) {
    Result j = {{"step_ms", shown("%.2f", r.step_ms)},
                {"tokens_per_s", shown("%.1f", r.tokens_per_s)},
                {"mfu", shown("%.4f", r.mfu)},
                {"peak_rss_mb", shown("%.1f", r.peak_rss_mb)},
                {"peak_mem_mb", shown("%.1f", r.peak_mem_mb)},
                {"step_ms_min", shown("%.2f", r.step_ms_min)},
                {"tokens_per_step", r.tokens_per_step},
                {"flops_per_token", shown("%.4g", r.flops_per_token)},
                {"gemm_gflops", shown("%.2f", r.gemm_gflops)},
                {"trainable", r.trainable},
                {"threads", r.threads},
                {"forward_ms", shown("%.2f", r.forward_ms)},
                {"backward_ms", shown("%.2f", r.backward_ms)},
                {"optimizer_ms", shown("%.2f", r.optimizer_ms)}};
    add_blas_fields(j);
    print_result(j);
  } else {
    std::printf("train step: %.2f ms (min %.2f), %.1f tokens/s, MFU %.1f%% of %.2f GFLOP/s (gemm), peak RSS %.1f MB\n",
                r.step_ms, r.step_ms_min, r.tokens_per_s, 100 * r.mfu, r.gemm_gflops, r.peak_rss_mb);
    print_blas_line();
  }
  return 0;
}

void setup_step(CLI::App& app, std::shared_ptr<StepOpts> o) {
  app.add_option("--config", o->config, "YAML run config (model, LoRA or full, batch_size x max_length)")->required();
  safetune::cli::add_overrides(app, *o);
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

struct AllreduceOpts {
  safetune::bench::AllreduceOptions a;
  bool json = false;
};

int run_allreduce(const AllreduceOpts& ao) {
  using namespace safetune;
  const bench::AllreduceOptions& o = ao.a;
  const bench::AllreduceResult r = bench::bench_allreduce(o);
  if (r.rank != 0) return 0;  // rank 0 reports
  if (ao.json)
    print_result({{"world_size", r.world_size},
                  {"mb", shown("%.1f", o.mb)},
                  {"ms", shown("%.2f", 1e3 * r.median_s)},
                  {"ms_min", shown("%.2f", 1e3 * r.best_s)},
                  {"algbw_gbs", shown("%.3f", r.algbw_gbs)},
                  {"busbw_gbs", shown("%.3f", r.busbw_gbs)}});
  else
    std::printf("all-reduce of %.1f MB fp32 over %d processes (Gloo, %.0f MB buckets): %.2f ms median (min %.2f), "
                "algorithm bandwidth %.3f GB/s, bus bandwidth %.3f GB/s\n",
                o.mb, r.world_size, o.bucket_mb, 1e3 * r.median_s, 1e3 * r.best_s, r.algbw_gbs, r.busbw_gbs);
  return 0;
}

void setup_allreduce(CLI::App& app, std::shared_ptr<AllreduceOpts> ao) {
  safetune::bench::AllreduceOptions& o = ao->a;
  app.add_option("--mb", o.mb, "buffer size in MB (float32)")->capture_default_str();
  app.add_option("--bucket-mb", o.bucket_mb, "all-reduce bucket size in MB, as the trainer's")->capture_default_str();
  app.add_option("--iters", o.iters, "timed all-reduces (the median is reported)")->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed all-reduces first")->capture_default_str();
  app.add_option("--timeout", o.timeout, "seconds to wait for the other ranks")->capture_default_str();
  app.add_flag("--json", ao->json, "one JSON object: world_size, mb, ms, algbw_gbs, busbw_gbs");
}

// ---------------------------------------------------------------------------- loss

struct LossOpts {
  safetune::bench::LossOptions b;
  int threads = 0;  // 0: every core
  bool json = false;
};

int run_loss(const LossOpts& lo) {
  using namespace safetune;
  const bench::LossOptions& o = lo.b;
  if (lo.threads < 0) input_error("--threads", "must be >= 0");
  const int threads = set_compute_threads(lo.threads);
  keep_freed_memory_for_reuse();  // as the trainer does: both paths reuse freed heap memory
  const bench::LossResult r = bench::bench_loss(o);
  if (lo.json) {
    // The five fields first, then the context.
    Result j = {{"fused_ms", shown("%.2f", r.fused_ms)},
                {"unfused_ms", shown("%.2f", r.unfused_ms)},
                {"fused_peak_mb", shown("%.1f", r.fused_peak_mb)},
                {"unfused_peak_mb", shown("%.1f", r.unfused_peak_mb)},
                {"max_abs_diff", shown("%.3g", r.max_abs_diff)},
                {"fused_cpu_ms", shown("%.2f", r.fused_cpu_ms)},
                {"unfused_cpu_ms", shown("%.2f", r.unfused_cpu_ms)},
                {"fused_loss", shown("%.6f", r.fused_loss)},
                {"unfused_loss", shown("%.6f", r.unfused_loss)},
                {"tokens", o.tokens},
                {"vocab", o.vocab},
                {"hidden", o.hidden},
                {"subset", o.subset},
                {"constraint", o.constraint},
                {"device", o.device},
                {"dtype", o.dtype},
                {"chunk", r.chunk},
                {"train_weight", o.train_weight},
                {"threads", threads}};
    add_blas_fields(j);
    print_result(j);
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
  safetune::bench::LossOptions& o = lo->b;
  app.add_option("--tokens", o.tokens, "N: rows of hidden states")->capture_default_str();
  app.add_option("--vocab", o.vocab, "V: vocabulary size")->capture_default_str();
  app.add_option("--hidden", o.hidden, "d: hidden size")->capture_default_str();
  app.add_option("--subset", o.subset, "K: safety-token columns")->capture_default_str();
  std::string kinds;  // every constraint the loss module has, by name
  for (const std::string& n : safetune::loss::names_of(safetune::loss::ConstraintKind{}))
    kinds += (kinds.empty() ? "" : " | ") + n;
  app.add_option("--constraint", o.constraint, kinds)->capture_default_str();
  app.add_option("--device", o.device, "cpu | cuda | cuda:N | auto")->capture_default_str();
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
      "ignored, the constraint on all N rows at its default temperature and reference mix; pact\n"
      "with its gate (reference logits on S given); safety_mass from reference logits on S and\n"
      "log-sum-exps (as a cache serves them);\n"
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
