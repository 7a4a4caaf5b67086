// bench loss: fused vs unfused objective, time and peak extra memory (see loss.h).
#include "safetune/bench/loss.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>

#include "safetune/core/device.h"
#include "safetune/core/error.h"
#include "safetune/loss/fused_objective.h"

namespace safetune::bench {
namespace {

// Receives every allocation (+bytes) and free (-bytes) LibTorch's allocators report on
// this thread while installed, and keeps the running sum's peak for one device type.
class AllocationTracker : public c10::MemoryReportingInfoBase {
 public:
  explicit AllocationTracker(c10::DeviceType type) : type_(type) {}
#if TORCH_VERSION_MAJOR >= 2
  using Total = size_t;
#else
  using Total = int64_t;
#endif
  void reportMemoryUsage(void*, int64_t alloc_size, Total, Total, c10::Device device) override {
    if (device.type() != type_) return;
    std::lock_guard<std::mutex> lock(mu_);
    live_ += alloc_size;
    peak_ = std::max(peak_, live_);
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t peak() const { return peak_; }

 private:
  c10::DeviceType type_;
  std::mutex mu_;
  int64_t live_ = 0, peak_ = 0;
};

// Peak extra bytes allocated while fn() runs.
template <class F>
int64_t peak_extra_bytes(c10::DeviceType type, F&& fn) {
  auto tracker = std::make_shared<AllocationTracker>(type);
  {
    c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, tracker);
    fn();
  }
  return tracker->peak();
}

using Clock = std::chrono::steady_clock;

struct Problem {
  at::Tensor H, W, targets;
  loss::ObjectiveSpec spec;
  loss::ConstraintInputs in;
};

Problem make_problem(const LossOptions& o, loss::ConstraintKind kind, const c10::Device& dev, at::ScalarType dtype) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t N = o.tokens, V = o.vocab, d = o.hidden, K = o.subset;
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  Problem p;
  // Logits of standard deviation ~2, like a trained model's spread.
  at::Tensor H = at::randn({N, d}, gen, f32);
  at::Tensor W = at::randn({V, d}, gen, f32) * (2.0 / std::sqrt(double(d)));
  at::Tensor tg = at::randint(0, V, {N}, gen, at::TensorOptions().dtype(at::kLong));
  tg.index_fill_(0, at::arange(0, N, 10, at::kLong), loss::kIgnoreIndex);
  p.spec.kind = kind;
  p.spec.lambda = 1.0;
  p.in.rows = at::arange(N, at::kLong).to(dev);
  p.in.valid = at::ones({N}, at::kBool).to(dev);
  // What the constraint reads, from its descriptor (constraint_choices.h).
  const loss::ConstraintDescriptor& desc = loss::descriptor_of(kind);
  p.spec.options.temperature = desc.default_temperature;
  p.spec.options.reference_mix = desc.default_reference_mix;
  if (desc.needs_tokens) {
    p.spec.S = at::randperm(V, gen, at::TensorOptions().dtype(at::kLong)).narrow(0, 0, K).to(dev);
    p.spec.w = at::rand({K}, gen, f32).sub_(0.2).clamp_min_(0).to(dev);
    if (!desc.uses_token_weights) p.spec.w.fill_(1.0);
  }
  if (desc.needs_tokens && !desc.needs_whole_vocab) {  // the reference on S, as a cache serves it
    p.in.t = at::arange(N, at::kLong).remainder_(64).to(dev);  // 64-token responses
    p.in.z_full = (at::randn({N, K}, gen, f32) * 2).to(dev);
    p.in.z_post = (at::randn({N, K}, gen, f32) * 2).to(dev);
    if (desc.needs_reference_lse) {
      // Log-sum-exps of reference rows of the same spread, whose S logits are these.
      const double T = p.spec.options.temperature;
      const at::Tensor rest = at::randn({N, V - K}, gen, f32) * 2;
      p.in.lse_full = at::cat({p.in.z_full.cpu(), rest}, 1).div(T).to(at::kDouble).logsumexp(1).to(dev);
      p.in.lse_post = at::cat({p.in.z_post.cpu(), rest}, 1).div(T).to(at::kDouble).logsumexp(1).to(dev);
    }
  }
  if (desc.needs_whole_vocab) p.in.ref_hidden = (H + 0.3 * at::randn({N, d}, gen, f32)).to(dev, dtype);
  p.H = H.to(dev, dtype).requires_grad_(true);
  p.W = W.to(dev, dtype).requires_grad_(o.train_weight);
  p.targets = tg.to(dev);
  // The reference's lm_head is W itself, as with LoRA's adapters switched off.
  if (desc.needs_whole_vocab) p.in.ref_weight = p.W.detach();
  return p;
}

struct RunOut {
  at::Tensor loss, grad_h, grad_w;
};

}  // namespace

LossResult bench_loss(const LossOptions& o) {
  if (o.tokens < 1 || o.vocab < 2 || o.hidden < 1) input_error("bench loss", "--tokens, --hidden >= 1, --vocab >= 2");
  if (o.subset < 1 || o.subset > o.vocab) input_error("--subset", "must be in [1, vocab]");
  if (o.chunk < 0) input_error("--chunk", "must be >= 0 (0: default)");
  if (o.iters < 1 || o.warmup < 0) input_error("bench loss", "--iters >= 1, --warmup >= 0");
  const std::optional<loss::ConstraintKind> kind = loss::parse_name<loss::ConstraintKind>(o.constraint);
  if (!kind) {
    std::string names;
    for (const std::string& n : loss::names_of(loss::ConstraintKind{})) names += (names.empty() ? "" : ", ") + n;
    input_error("--constraint", "expected one of " + names + ", got '" + o.constraint + "'");
  }
  if (o.dtype != "fp32" && o.dtype != "bf16") input_error("--dtype", "expected fp32 or bf16, got '" + o.dtype + "'");
  const c10::Device dev = resolve_device(o.device, "--device");
  const at::ScalarType dtype = o.dtype == "bf16" ? at::kBFloat16 : at::kFloat;

  Problem p = make_problem(o, *kind, dev, dtype);
  loss::FusedObjectiveOptions fo;
  fo.chunk_tokens = o.chunk;
  auto reset = [&] {
    p.H.mutable_grad().reset();
    if (p.W.requires_grad()) p.W.mutable_grad().reset();
  };
  // One forward + backward; the scalar read at the end waits for a GPU to finish.
  auto run = [&](bool fused) {
    loss::ObjectiveValues v =
        fused ? loss::fused_objective(p.H, p.W, p.targets, p.spec, p.in, fo)
              : loss::unfused_objective(p.H, p.W, p.targets, p.spec, p.in);
    v.total.backward();
    return v.total.detach().to(at::kCPU, at::kDouble).item<double>();
  };
  // Each timed run is also measured: best wall time, CPU time (all threads) of that run,
  // largest peak; the last run's loss and gradients are kept for the comparison.
  struct Timing {
    double wall_ms = 1e300, cpu_ms = 0, peak_mb = 0;
  };
  auto cpu_now_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
  };
  auto measured = [&](bool fused, Timing& tm) {
    for (int i = 0; i < o.warmup; ++i) reset(), run(fused);
    RunOut r;
    for (int i = 0; i < o.iters; ++i) {
      reset();
      double loss = 0;
      const auto t0 = Clock::now();
      const double c0 = cpu_now_ms();
      const int64_t bytes = peak_extra_bytes(dev.type(), [&] { loss = run(fused); });
      const double cpu = cpu_now_ms() - c0;
      const double wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (wall < tm.wall_ms) tm.wall_ms = wall, tm.cpu_ms = cpu;
      tm.peak_mb = std::max(tm.peak_mb, double(bytes) / (1024.0 * 1024.0));
      r.loss = at::scalar_tensor(loss, at::kDouble);
    }
    r.grad_h = p.H.grad().detach().to(at::kCPU, at::kDouble);
    if (p.W.requires_grad()) r.grad_w = p.W.grad().detach().to(at::kCPU, at::kDouble);
    return r;
  };

  LossResult res;
  res.chunk = o.chunk > 0 ? o.chunk : loss::default_chunk_tokens(o.vocab, o.train_weight, dev.is_cuda());
  Timing tu, tf;
  const RunOut u = measured(false, tu);
  const RunOut f = measured(true, tf);
  res.unfused_ms = tu.wall_ms, res.unfused_cpu_ms = tu.cpu_ms, res.unfused_peak_mb = tu.peak_mb;
  res.fused_ms = tf.wall_ms, res.fused_cpu_ms = tf.cpu_ms, res.fused_peak_mb = tf.peak_mb;
  res.fused_loss = f.loss.item<double>();
  res.unfused_loss = u.loss.item<double>();
  double diff = std::abs(res.fused_loss - res.unfused_loss);
  diff = std::max(diff, (f.grad_h - u.grad_h).abs().max().item<double>());
  if (f.grad_w.defined()) diff = std::max(diff, (f.grad_w - u.grad_w).abs().max().item<double>());
  res.max_abs_diff = diff;
  return res;
}

}  // namespace safetune::bench
