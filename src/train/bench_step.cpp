// Training-step benchmark (see bench_step.h for the FLOP count).
#include "safetune/train/bench_step.h"

#include "safetune/train/cpu_memory.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <sys/resource.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <sstream>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/threads.h"
#include "safetune/data/batch.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/train/device.h"
#include "safetune/train/objective.h"
#include "safetune/train/optimizer.h"
#include "safetune/train/reference.h"

namespace safetune::train {

BenchStepResult bench_step(const RunConfig& cfg, int steps, int warmup, const std::function<double()>& gemm_gflops,
                           int64_t prompt_len, const std::string& trace_path) {
  if (!trace_path.empty()) {  // fail now, not after the steps
    const std::filesystem::path dir = std::filesystem::path(trace_path).parent_path();
    if (!dir.empty() && !std::filesystem::is_directory(dir))
      input_error("--trace", "'" + dir.string() + "' is not a directory");
  }
  if (steps < 1 || warmup < 0) input_error("bench step", "--steps must be >= 1 and --warmup >= 0");
  check_objective(cfg.objective);
  BenchStepResult r;
  r.threads = set_compute_threads(static_cast<int>(cfg.train.threads));
  keep_freed_memory_for_reuse();
  const c10::Device device = resolve_device(cfg.train.device);
  std::optional<at::ScalarType> dtype;
  if (cfg.model.dtype != "auto") dtype = model::parse_torch_dtype(cfg.model.dtype, "model.dtype");
  model::LoadedModel loaded = model::load_model(cfg.model.path, device, dtype);
  model::Transformer& m = *loaded.model;
  const auto& mc = loaded.config;

  std::vector<at::Tensor> params;
  int64_t n_lora = 0;
  if (cfg.lora.enabled) {
    model::LoraSpec spec;
    spec.r = cfg.lora.r;
    spec.alpha = cfg.lora.alpha;
    spec.dropout = cfg.lora.dropout;
    spec.target_modules = cfg.lora.target_modules;
    for (auto& [n, t] : model::attach_lora(m, spec, static_cast<uint64_t>(cfg.train.seed), true, "lora")) {
      params.push_back(t);
      n_lora += t.numel();
    }
  } else {
    for (auto& p : m.parameters()) {
      p.set_requires_grad(true);
      params.push_back(p);
    }
  }
  m.train();
  m.activation_checkpointing = cfg.train.activation_checkpointing;
  for (auto& p : params) r.trainable += p.numel();

  int64_t n_matmul = 0;
  for (const auto& item : m.named_parameters())
    if (item.value().dim() == 2 && item.key() != "model.embed_tokens.weight") n_matmul += item.value().numel();
  if (!m.lm_head) n_matmul += m.lm_head_weight().numel();
  const int64_t B = cfg.train.batch_size, T = cfg.data.max_length;
  const double attn = 12.0 * mc.num_hidden_layers * static_cast<double>(T) * mc.num_attention_heads * mc.head_dim;
  r.flops_per_token = (cfg.lora.enabled ? 4.0 * n_matmul + 6.0 * n_lora : 6.0 * n_matmul) + attn;
  r.tokens_per_step = B * T;

  // A fixed random batch, all positions real and trained.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  data::Batch batch;
  batch.input_ids = at::randint(0, mc.vocab_size, {B, T}, gen, at::kLong);
  batch.attention_mask = at::ones({B, T}, at::kLong);
  batch.labels = batch.input_ids.clone();
  // Response = every token after the first (the same T - 1 trained positions as before),
  // and a post-only context of the same length (header = the first token): the
  // constraint's reference passes are timed at their largest.
  // Response = the tokens after the prompt (prompt_len 0: every token after the first, the
  // same T - 1 trained positions as without a response mark). The post-only context is a
  // 4-token header and the response (with no prompt: the row itself).
  const int64_t P0 = std::max<int64_t>(1, prompt_len);
  if (P0 >= T) input_error("bench step", "--prompt must be shorter than data.max_length");
  batch.labels.narrow(1, 0, P0).fill_(-100);
  batch.response_start = at::full({B}, P0, at::kLong);
  batch.lengths = at::full({B}, T, at::kLong);
  if (prompt_len <= 0) {
    batch.post_ids = batch.input_ids.clone();
    batch.post_response_start = at::ones({B}, at::kLong);
  } else {
    const int64_t H = 4;
    batch.post_ids = at::cat({batch.input_ids.narrow(1, 0, H), batch.input_ids.narrow(1, P0, T - P0)}, 1).contiguous();
    batch.post_response_start = at::full({B}, H, at::kLong);
  }
  batch.post_attention_mask = at::ones_like(batch.post_ids);
  for (int64_t i = 0; i < B; ++i) batch.indices.push_back(i);
  batch = batch_to(batch, device);

  // The constraint exactly as the trainer sets it up. reference = cache: the reference's
  // rows for this batch are computed once here (base model) and served from memory during
  // the timed steps, as a cache file would serve them.
  std::unique_ptr<Constraint> constraint;
  if (cfg.objective.constraint != "none") {
    RunConfig c2 = cfg;
    const bool cached = cfg.objective.reference == "cache";
    if (cached) c2.objective.reference = cfg.lora.enabled ? "adapter_off" : "copy";
    constraint = setup_constraint(c2, m, nullptr);
    if (cached) {
      ReferenceRequest all = constraint->request;
      all.post = all.mass = true;
      const loss::ResponsePositions P = loss::response_positions(batch);
      ReferenceLogits ref = constraint->reference->compute(batch, P, all);
      const int64_t R = T - P0;  // response positions per row
      at::Tensor offsets = at::arange(0, B * R + 1, R, at::kLong);
      constraint->reference = memory_reference(offsets, ref.z_full, ref.z_post, ref.mass, "bench cache");
    }
  }

  AdamWOptions ao;
  ao.lr = cfg.optim.lr;
  ao.beta1 = cfg.optim.beta1;
  ao.beta2 = cfg.optim.beta2;
  ao.eps = cfg.optim.eps;
  ao.weight_decay = cfg.optim.weight_decay;
  AdamW opt(params, ao);
  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); };
  double fwd = 0, bwd = 0, upd = 0;  // phase times of the last step
  auto step = [&] {
    fwd = bwd = 0;
    for (int64_t i = 0; i < cfg.train.grad_accum; ++i) {
      auto t0 = Clock::now();
      LossTerms lt = compute_objective(cfg.objective, m, batch, constraint.get());
      synchronize(device);  // CUDA runs asynchronously: time the work, not its launch
      fwd += ms_since(t0);
      t0 = Clock::now();
      (lt.total / static_cast<double>(cfg.train.grad_accum)).backward();
      synchronize(device);
      bwd += ms_since(t0);
    }
    auto t0 = Clock::now();
    clip_grad_norm(params, cfg.optim.grad_clip);
    opt.step();
    for (auto& p : params) p.mutable_grad() = at::Tensor();  // as the trainer: dropped, not zeroed
    synchronize(device);
    upd = ms_since(t0);
  };
  for (int i = 0; i < warmup; ++i) step();
  reset_peak_memory(device);  // the steady state's peak, as PyTorch scripts usually report it
  std::vector<double> ms;
  std::vector<std::array<double, 3>> phases;
  std::ostringstream trace_json;
  {
    std::unique_ptr<torch::autograd::profiler::RecordProfile> trace;
    if (!trace_path.empty()) trace = std::make_unique<torch::autograd::profiler::RecordProfile>(trace_json);
    for (int i = 0; i < steps; ++i) {
      auto t0 = Clock::now();
      step();
      ms.push_back(ms_since(t0));
      phases.push_back({fwd, bwd, upd});
    }
  }  // the profiler writes its trace here
  if (!trace_path.empty()) write_file_atomic(trace_path, trace_json.str());
  // The phases of the median step.
  std::vector<size_t> order(ms.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ms[a] < ms[b]; });
  const auto& med = phases[order[order.size() / 2]];
  r.forward_ms = med[0];
  r.backward_ms = med[1];
  r.optimizer_ms = med[2];
  std::sort(ms.begin(), ms.end());
  r.step_ms = ms[ms.size() / 2];
  r.step_ms_min = ms.front();
  r.tokens_per_s = static_cast<double>(B * T * cfg.train.grad_accum) / (r.step_ms / 1e3);
  r.gemm_gflops = gemm_gflops();
  r.mfu = r.flops_per_token * r.tokens_per_s / (r.gemm_gflops * 1e9);
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  r.peak_rss_mb = ru.ru_maxrss / 1024.0;  // Linux reports KiB
  r.peak_mem_mb = peak_memory_mb(device);
  return r;
}

}  // namespace safetune::train
