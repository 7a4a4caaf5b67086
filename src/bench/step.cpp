// Training-step benchmark (see step.h for the FLOP count).
#include "safetune/bench/step.h"

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

#include "safetune/core/device.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/data/batch.h"
#include "safetune/model/transformer.h"
#include "safetune/train/objective.h"
#include "safetune/train/optimizer.h"
#include "safetune/train/reference.h"
#include "safetune/train/setup.h"

namespace safetune::bench {

namespace {

// The trainable parameters, the FLOPs of one trained token (see step.h) and the batch's
// tokens.
void count_work(const train::Run& run, StepResult& r) {
  const train::RunConfig& cfg = run.cfg;
  for (const at::Tensor& p : run.param_tensors) r.trainable += p.numel();
  const model::Transformer& m = *run.model.model;
  const auto& mc = run.model.config;
  int64_t n_matmul = 0;
  for (const auto& item : m.named_parameters())
    if (item.value().dim() == 2 && item.key() != "model.embed_tokens.weight") n_matmul += item.value().numel();
  if (!m.lm_head) n_matmul += m.lm_head_weight().numel();
  const int64_t B = cfg.train.batch_size, T = cfg.data.max_length;
  const double attn = 12.0 * mc.num_hidden_layers * static_cast<double>(T) * mc.num_attention_heads * mc.head_dim;
  r.flops_per_token = (cfg.lora.enabled ? 4.0 * n_matmul + 6.0 * r.trainable : 6.0 * n_matmul) + attn;
  r.tokens_per_step = B * T;
}

// A fixed random batch of B x T tokens, with `prompt_len` untrained prompt tokens per row.
data::Batch random_batch(const train::RunConfig& cfg, int64_t vocab, int64_t prompt_len, const c10::Device& device) {
  const int64_t B = cfg.train.batch_size, T = cfg.data.max_length;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  data::Batch batch;
  batch.input_ids = at::randint(0, vocab, {B, T}, gen, at::kLong);
  batch.attention_mask = at::ones({B, T}, at::kLong);
  batch.labels = batch.input_ids.clone();
  // Response = the tokens after the prompt (prompt_len 0: every token after the first, the
  // same T - 1 trained positions as without a response mark). The post-only context is a
  // 4-token header and the response (with no prompt: the row itself), so that the
  // constraint's reference passes are timed at their largest.
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
  return data::to_device(batch, device);
}

// reference = cache: the reference's rows for this batch, computed once (base model) and
// served from memory during the timed steps, as a cache file would serve them.
void serve_reference_from_memory(train::Objective& obj, const data::Batch& batch, int64_t rows_per_example) {
  train::ReferenceRequest all = obj.request;
  all.post = all.mass = true;
  const loss::ResponsePositions P = loss::response_positions(batch);
  train::ReferenceLogits ref = obj.reference->compute(batch, P, all);
  const int64_t B = static_cast<int64_t>(batch.indices.size()), R = rows_per_example;
  at::Tensor offsets = at::arange(0, B * R + 1, R, at::kLong);
  obj.reference =
      train::memory_reference(offsets, ref.z_full, ref.z_post, ref.mass, "bench cache", ref.lse_full, ref.lse_post);
}

// The median step's time and its phases (forward, backward, optimizer), the fastest step,
// and the tokens per second of the median.
void record_median_step(std::vector<double> ms, const std::vector<std::array<double, 3>>& phases,
                        int64_t tokens_per_step, StepResult& r) {
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
  r.tokens_per_s = static_cast<double>(tokens_per_step) / (r.step_ms / 1e3);
}

}  // namespace

StepResult bench_step(const train::RunConfig& cfg, int steps, int warmup, const std::function<double()>& gemm_gflops,
                      int64_t prompt_len, const std::string& trace_path) {
  if (!trace_path.empty()) {  // fail now, not after the steps
    const std::filesystem::path dir = std::filesystem::path(trace_path).parent_path();
    if (!dir.empty() && !std::filesystem::is_directory(dir))
      input_error("--trace", "'" + dir.string() + "' is not a directory");
  }
  if (steps < 1 || warmup < 0) input_error("bench step", "--steps must be >= 1 and --warmup >= 0");
  // The trainer's own set-up, without data or a run directory. reference = cache is set up
  // as the base model's reference (adapter_off or copy) and then served from memory.
  train::RunConfig c = cfg;
  const bool cached = cfg.objective.reference == train::ReferenceKind::cache;
  if (cached) c.objective.reference = cfg.lora.enabled ? train::ReferenceKind::adapter_off : train::ReferenceKind::copy;
  train::SetupOptions so;
  so.data = so.run_directory = so.log = false;
  train::Run run = train::setup_run(c, so);
  const c10::Device device = run.device;
  model::Transformer& m = *run.model.model;
  std::vector<at::Tensor>& params = run.param_tensors;
  StepResult r;
  r.threads = run.threads;
  count_work(run, r);
  const int64_t B = cfg.train.batch_size, T = cfg.data.max_length;
  const data::Batch batch = random_batch(cfg, run.model.config.vocab_size, prompt_len, device);
  if (cached && run.objective.reference)
    serve_reference_from_memory(run.objective, batch, T - std::max<int64_t>(1, prompt_len));
  train::AdamW& opt = *run.optimizer;

  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); };
  double fwd = 0, bwd = 0, upd = 0;  // phase times of the last step
  auto step = [&] {
    fwd = bwd = 0;
    for (int64_t i = 0; i < cfg.train.grad_accum; ++i) {
      auto t0 = Clock::now();
      train::LossTerms lt = train::compute_objective(run.objective, m, batch);
      synchronize(device);  // CUDA runs asynchronously: time the work, not its launch
      fwd += ms_since(t0);
      t0 = Clock::now();
      (lt.total / static_cast<double>(cfg.train.grad_accum)).backward();
      synchronize(device);
      bwd += ms_since(t0);
    }
    auto t0 = Clock::now();
    train::clip_grad_norm(params, cfg.optim.grad_clip);
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
  record_median_step(ms, phases, B * T * cfg.train.grad_accum, r);
  r.gemm_gflops = gemm_gflops();
  r.mfu = r.flops_per_token * r.tokens_per_s / (r.gemm_gflops * 1e9);
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  r.peak_rss_mb = ru.ru_maxrss / 1024.0;  // Linux reports KiB
  r.peak_mem_mb = peak_memory_mb(device);
  return r;
}

}  // namespace safetune::bench
