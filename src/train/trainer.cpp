// The training loop. Read top to bottom: data selection, run-directory policy, checkpoint
// save/restore, then run_training() itself.
#include "safetune/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "safetune/core/blas_info.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/threads.h"
#include "safetune/data/batch.h"
#include "safetune/data/records.h"
#include "safetune/dist/data_parallel.h"
#include "safetune/io/tensor_io.h"
#include "safetune/model/export.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"
#include "safetune/train/checkpoint.h"
#include "safetune/train/cpu_memory.h"
#include "safetune/train/device.h"
#include "safetune/train/metrics.h"
#include "safetune/train/objective.h"
#include "safetune/train/optimizer.h"
#include "safetune/train/progress.h"
#include "safetune/train/reference.h"
#include "safetune/train/run_data.h"
#include "safetune/train/schedule.h"
#include "safetune/train/signals.h"

namespace safetune::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int64_t steps_per_epoch(int64_t num_examples, int64_t batch_size, int64_t grad_accum) {
  const int64_t micro = (num_examples + batch_size - 1) / batch_size;
  return (micro + grad_accum - 1) / grad_accum;
}

namespace {

// ---------------------------------------------------------------------------- run directory

bool holds_run(const std::string& dir) {
  return fs::exists(fs::path(dir) / "config.resolved.yaml") || fs::exists(fs::path(dir) / "latest") ||
         fs::exists(fs::path(dir) / "checkpoints");
}

// Fields that may differ between a run and its resumption: bookkeeping, and the thread
// count (which can change the last bits of BLAS results, so keep it for exact resumes).
RunConfig normalised_for_resume(RunConfig c) {
  c.train.resume = "none";
  c.train.overwrite = false;
  c.train.log_every = 0;
  c.train.save_every = 0;
  c.train.keep_checkpoints = 0;
  c.train.threads = 0;
  c.train.dist_timeout_s = 0;
  c.train.max_bad_steps = 0;  // a run stopped by non-finite steps may resume with more patience
  return c;
}

void check_resume_config(const RunConfig& now, const std::string& run_dir) {
  const std::string path = (fs::path(run_dir) / "config.resolved.yaml").string();
  if (!fs::exists(path)) return;
  RunConfig before = parse_run_config(read_file(path), path);
  const std::string a = to_yaml(normalised_for_resume(before)), b = to_yaml(normalised_for_resume(now));
  if (a == b) return;
  std::istringstream sa(a), sb(b);
  std::string la, lb;
  while (std::getline(sa, la) && std::getline(sb, lb))
    if (la != lb) break;
  input_error(path, "train.resume=auto: this config differs from the run's: '" + lb + "' (run has '" + la +
                        "'); use the same config, or a new train.output_dir");
}

void clear_run(const std::string& dir) {
  for (const char* name : {"checkpoints", "latest", "metrics.jsonl", "config.resolved.yaml", "adapter", "model"})
    fs::remove_all(fs::path(dir) / name);
  clean_stale_temporaries(dir);
}

// ---------------------------------------------------------------------------- checkpoints

struct Run {
  const RunConfig& cfg;
  model::Transformer& model;
  AdamW& opt;
  bool lora;
  model::LoraSpec spec;
  std::vector<std::pair<std::string, at::Tensor>> params;  // trainable, named
};

// The adapter as PEFT saves it, in fp32: for bf16 adapters, AdamW's fp32 master copies,
// which carry the updates smaller than a bf16 ulp that their rounding drops.
void save_adapter(const Run& r, const std::string& dir) {
  model::save_adapter(dir, r.model, r.spec, r.cfg.model.path, [&](const at::Tensor& t) { return r.opt.master_of(t); });
}

std::string save_checkpoint(const Run& r, const TrainerState& st, const std::string& run_dir) {
  const std::string tmp = begin_checkpoint(run_dir, st.step);
  const fs::path d(tmp);
  if (r.lora) save_adapter(r, tmp);
  else model::save_model(tmp, r.model, r.model.dtype());
  std::vector<std::pair<std::string, at::Tensor>> opt_state;
  for (auto& [name, t] : r.opt.state()) opt_state.emplace_back(name, t.detach().to(at::kCPU).contiguous());
  io::save_tensors((d / "optimizer.safetensors").string(), opt_state);
  io::save_tensors((d / "rng.safetensors").string(), rng_states(r.model.device()));
  write_file_atomic((d / "trainer_state.json").string(), trainer_state_json(st));
  write_file_atomic((d / "config.resolved.yaml").string(), to_yaml(r.cfg));
  const std::string path = commit_checkpoint(run_dir, tmp, st.step);
  prune_checkpoints(run_dir, r.cfg.train.keep_checkpoints);
  return path;
}

TrainerState restore_checkpoint(Run& r, const std::string& dir, const TrainerState& expected) {
  const fs::path d(dir);
  TrainerState st = parse_trainer_state(read_file((d / "trainer_state.json").string()), (d / "trainer_state.json").string());
  if (st.total_steps != expected.total_steps || st.steps_per_epoch != expected.steps_per_epoch ||
      st.num_examples != expected.num_examples)
    input_error(dir, "checkpoint was made for " + std::to_string(st.num_examples) + " examples, " +
                         std::to_string(st.total_steps) + " steps; this run has " +
                         std::to_string(expected.num_examples) + " examples, " + std::to_string(expected.total_steps) +
                         " steps");
  const std::string wfile = (d / (r.lora ? "adapter_model.safetensors" : "model.safetensors")).string();
  std::map<std::string, at::Tensor> w = io::load_tensors(wfile);
  at::NoGradGuard no_grad;
  for (auto& [name, p] : r.params) {
    auto it = w.find(name);
    if (it == w.end()) input_error(wfile, "missing tensor '" + name + "'");
    if (it->second.sizes() != p.sizes()) input_error(wfile, "tensor '" + name + "' has the wrong shape");
    p.copy_(it->second);
  }
  std::map<std::string, at::Tensor> o = io::load_tensors((d / "optimizer.safetensors").string());
  r.opt.load_state(std::vector<std::pair<std::string, at::Tensor>>(o.begin(), o.end()),
                   (d / "optimizer.safetensors").string());
  const std::string rng_file = (d / "rng.safetensors").string();
  set_rng_states(io::load_tensors(rng_file), r.model.device(), rng_file);
  return st;
}

void export_final(const Run& r, const std::string& run_dir, const std::string& out) {
  if (r.lora) {
    const std::string tmp = out + ".tmp";
    fs::remove_all(tmp);
    save_adapter(r, tmp);
    model::replace_dir(tmp, out);
  } else {
    at::ScalarType stored = at::kFloat;
    const std::string& td = r.model.config().torch_dtype;
    if (!td.empty()) stored = model::parse_torch_dtype(td, r.cfg.model.path + "/config.json");
    model::write_model_dir(out, r.model, r.cfg.model.path, stored, /*replace=*/true);
  }
}

// "ce (nan), gradient norm (inf)": the loss terms and the gradient norm that are not
// finite; "" when all are.
std::string non_finite_terms(const std::vector<std::pair<std::string, double>>& terms, double grad_norm) {
  std::string out;
  auto add = [&out](const std::string& name, double v) {
    if (!std::isfinite(v)) out += (out.empty() ? "" : ", ") + name + " (" + fmt::format("{}", v) + ")";
  };
  for (const auto& [name, v] : terms)
    if (name != "total") add(name, v);
  if (out.empty() && !terms.empty()) add("total loss", terms.back().second);  // finite terms, overflowing sum
  add("gradient norm", grad_norm);
  return out;
}

bool all_finite(const std::vector<at::Tensor>& tensors) {
  for (const at::Tensor& t : tensors)
    if (!at::isfinite(t.detach()).all().item<bool>()) return false;
  return true;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

// ---------------------------------------------------------------------------- the loop

TrainResult run_training(const RunConfig& cfg, const TrainOptions& options) {
  // 1. Everything checkable before anything heavy.
  validate(cfg);
  check_objective(cfg.objective);
  // Data parallelism (WORLD_SIZE > 1, see dist/data_parallel.h): the global batch stays
  // batch_size x grad_accum; micro-batch i of a step runs on rank i mod WORLD_SIZE.
  const dist::Env denv = dist::env_from_environment();
  if (cfg.train.grad_accum % denv.world_size != 0)
    input_error("train.grad_accum", std::to_string(cfg.train.grad_accum) + " micro-batches per step cannot be split over " +
                                        std::to_string(denv.world_size) + " processes; use a multiple of " +
                                        std::to_string(denv.world_size));
  // The device (train.device): a GPU that is not there fails here, before anything is
  // loaded. In a multi-process run a bare "cuda" is cuda:LOCAL_RANK, and the process
  // group is NCCL's for CUDA tensors, Gloo's for CPU ones.
  const c10::Device device =
      resolve_device(cfg.train.device, "train.device", denv.world_size > 1 ? denv.local_rank : -1);
  // Processes on one machine share its cores.
  const int threads = set_compute_threads(cfg.train.threads > 0 ? static_cast<int>(cfg.train.threads)
                                                                 : std::max(1, available_cores() / denv.local_world_size));
  keep_freed_memory_for_reuse();
  if (denv.rank != 0) spdlog::set_level(spdlog::level::err);  // rank 0 alone logs
  // First, since every step time that follows depends on it: the GEMM kernels in use.
  spdlog::info("blas: {}", describe_blas(blas_info()));
  dist::DataParallel dp(denv, cfg.train.dist_timeout_s, device.is_cuda() ? "cuda" : "cpu");
  const std::string run_dir = cfg.train.output_dir;
  if (cfg.model.path.empty() || !fs::is_directory(cfg.model.path))
    input_error("model.path", "'" + cfg.model.path + "' is not a model directory");
  std::vector<data::Record> records = select_records(cfg.data);
  if (fs::exists(run_dir) && !fs::is_directory(run_dir)) input_error("train.output_dir", "'" + run_dir + "' is a file");
  const bool existing = holds_run(run_dir);
  std::optional<std::string> resume_from;
  if (existing) {
    if (cfg.train.resume == "auto") {
      check_resume_config(cfg, run_dir);
      if (dp.is_main()) clean_stale_temporaries(run_dir);  // what a killed process left behind
      resume_from = latest_checkpoint(run_dir);
      if (!resume_from) spdlog::warn("{}: no checkpoint to resume from; starting from step 0", run_dir);
    } else if (!cfg.train.overwrite) {
      input_error("train.output_dir", "'" + run_dir +
                                          "' holds another run; continue it with train.resume=auto or replace it "
                                          "with train.overwrite=true");
    }
  }
  dp.barrier("run directory check");  // every rank decided before rank 0 writes there

  // 2. Model, tokenizer, template, examples. model.dtype = auto: fp32 on CPU, bf16 on CUDA
  // (model::compute_dtype_for); non-fp32 trained parameters get fp32 master weights in
  // AdamW (optimizer.h), so bf16 full fine-tuning and bf16 adapters both train in fp32.
  std::optional<at::ScalarType> dtype;
  if (cfg.model.dtype != "auto") dtype = model::parse_torch_dtype(cfg.model.dtype, "model.dtype");
  model::LoadedModel loaded = model::load_model(cfg.model.path, device, dtype);
  model::Transformer& m = *loaded.model;

  const bool lora = cfg.lora.enabled;
  model::LoraSpec spec;
  std::vector<std::pair<std::string, at::Tensor>> params;  // trainable, named
  if (lora) {
    spec.r = cfg.lora.r;
    spec.alpha = cfg.lora.alpha;
    spec.dropout = cfg.lora.dropout;
    spec.target_modules = cfg.lora.target_modules;
    params = model::attach_lora(m, spec, static_cast<uint64_t>(cfg.train.seed), true, "lora");
  } else {
    for (const auto& item : m.named_parameters()) {
      at::Tensor p = item.value();
      p.set_requires_grad(true);
      params.emplace_back(item.key(), p);
    }
  }
  m.train();
  m.activation_checkpointing = cfg.train.activation_checkpointing;
  // After the LoRA checks, so that a bad rank or module is the only message printed.
  std::unique_ptr<text::Tokenizer> tok = text::load_tokenizer(cfg.model.path);
  const text::ChatTemplate tmpl = chat_template_for(cfg.model);
  std::vector<data::Example> examples = data::tokenize_records(records, *tok, tmpl, cfg.data.max_length);
  // The safety constraint: tokens.json checked against this model, and its reference
  // (a frozen copy, the adapters switched off, or a cache checked against its hashes).
  std::unique_ptr<Constraint> constraint = setup_constraint(cfg, m, tok.get());
  int64_t n_trainable = 0;
  for (const auto& [n, p] : params) n_trainable += p.numel();

  // 3. Sizes, optimizer, schedule, state.
  const int64_t n_examples = static_cast<int64_t>(examples.size());
  const int64_t bs = cfg.train.batch_size, ga = cfg.train.grad_accum;
  const int64_t spe = steps_per_epoch(n_examples, bs, ga);
  const int64_t micro_per_epoch = (n_examples + bs - 1) / bs;
  const int64_t total = cfg.train.max_steps > 0 ? cfg.train.max_steps : cfg.train.epochs * spe;
  data::Batcher batcher(examples, bs, static_cast<uint64_t>(cfg.data.seed), cfg.data.shuffle, false,
                        data::pad_id_for(*tok));
  AdamWOptions aopts;
  aopts.lr = cfg.optim.lr;
  aopts.beta1 = cfg.optim.beta1;
  aopts.beta2 = cfg.optim.beta2;
  aopts.eps = cfg.optim.eps;
  aopts.weight_decay = cfg.optim.weight_decay;
  std::vector<at::Tensor> ptensors;
  std::vector<std::string> pnames;
  for (const auto& [n, p] : params) {
    pnames.push_back(n);
    ptensors.push_back(p);
  }
  AdamW opt(ptensors, aopts, pnames);
  Run r{cfg, m, opt, lora, spec, params};
  Schedule schedule(cfg.schedule, cfg.optim.lr, total);

  TrainerState st;
  st.total_steps = total;
  st.steps_per_epoch = spe;
  st.num_examples = n_examples;
  seed_cpu_rng(static_cast<uint64_t>(cfg.train.seed));
  if (resume_from) {
    st = restore_checkpoint(r, *resume_from, st);
    spdlog::info("resuming {} from step {} of {}", run_dir, st.step, total);
  } else if (existing && cfg.train.overwrite) {
    spdlog::warn("{}: replacing the run there (train.overwrite=true)", run_dir);
    if (dp.is_main()) clear_run(run_dir);
  }
  // Every rank starts from rank 0's weights; dropout streams differ between ranks.
  dp.broadcast(ptensors);
  if (dp.rank() > 0) seed_cpu_rng(static_cast<uint64_t>(cfg.train.seed) * 1000003u + dp.rank() * 7919u + st.step);
  // Dropout on a GPU draws from the CUDA generator: seeded per rank too; on resume rank 0
  // continues the stream its checkpoint saved, the others reseed as for the CPU's.
  if (device.is_cuda() && (!resume_from || dp.rank() > 0))
    torch::cuda::manual_seed(static_cast<uint64_t>(cfg.train.seed) * 1000003u + dp.rank() * 7919u + st.step);

  // 4. The run directory.
  std::optional<MetricsLog> metrics;  // rank 0's
  if (dp.is_main()) {
    ensure_output_dir(run_dir);
    // Also a run killed before its first checkpoint (or its first config write) may have
    // left temporaries; they are stale here whether or not this is a resume.
    clean_stale_temporaries(run_dir);
    write_file_atomic((fs::path(run_dir) / "config.resolved.yaml").string(), to_yaml(cfg));
    metrics.emplace((fs::path(run_dir) / "metrics.jsonl").string(), resume_from ? st.step : -1);
  }
  if (dp.active())
    spdlog::info("data parallel: {} processes, {} x {} examples per step, micro-batch i on rank i mod {}",
                 dp.world_size(), ga, bs, dp.world_size());
  spdlog::info("{}: {} parameters, {} trainable ({}), {} examples, {} steps ({} per epoch), {} threads, {} {}",
               cfg.model.path, m.num_parameters(), n_trainable, lora ? "LoRA" : "full fine-tuning", n_examples,
               total, spe, threads, device.str(), c10::toString(m.dtype()));
  if (constraint)
    spdlog::info("constraint {} (lambda {}) on {} safety tokens, reference {}", cfg.objective.constraint,
                 cfg.objective.lambda, constraint->S.numel(), constraint->reference->name());

  std::optional<StopSignals> signals;
  if (options.handle_signals) signals.emplace();
  const bool tty = options.progress_tty < 0 ? Progress::stderr_is_tty() : options.progress_tty == 1;
  Progress progress(total, cfg.train.log_every, tty);

  TrainResult result;
  result.run_dir = run_dir;
  result.total_steps = total;
  const auto process_start = Clock::now();
  const double elapsed_before = st.elapsed_s;
  const int64_t start_step = st.step;
  auto window_start = Clock::now();
  int64_t window_tokens = 0;
  bool first = true;
  // Non-finite steps: how many in a row, and the state (with its RNG) after the last good
  // update, which is what a run stopped by them saves.
  int64_t bad_in_a_row = 0;
  TrainerState last_good = st;
  auto last_good_rng = rng_states(device);

  while (st.step < total) {
    const int64_t epoch = st.step / spe, sie = st.step % spe;
    const int64_t m0 = sie * ga, m1 = std::min(m0 + ga, micro_per_epoch);
    std::vector<data::Batch> batches;
    int64_t group_tokens = 0, real_tokens = 0;
    for (int64_t i = m0; i < m1; ++i) {
      batches.push_back(batch_to(batcher.batch(epoch, i), device));  // no copy on CPU
      group_tokens += trained_tokens(batches.back());
      real_tokens += batches.back().attention_mask.sum().item<int64_t>();
    }
    const double lr = schedule.lr(st.step, epoch);
    opt.set_lr(lr);

    // Forward/backward per micro-batch, each weighted by its share of the trained tokens,
    // so that accumulation equals one large batch.
    std::vector<std::pair<std::string, double>> terms;  // the objective's terms, then "total"
    for (const data::Batch& b : batches) {
      if (!dp.owns(&b - batches.data())) continue;
      const int64_t n = trained_tokens(b);
      if (n == 0) continue;
      const double w = static_cast<double>(n) / static_cast<double>(group_tokens);
      LossTerms lt = compute_objective(cfg.objective, m, b, constraint.get());
      (lt.total * w).backward();
      if (terms.empty()) {
        for (const auto& [k, v] : lt.terms) terms.emplace_back(k, 0.0);
        terms.emplace_back("total", 0.0);
      }
      for (size_t k = 0; k < lt.terms.size(); ++k) terms[k].second += w * lt.terms[k].second.item<double>();
      terms.back().second += w * lt.total.item<double>();
    }
    // Sum the weighted gradients and loss terms of all ranks (no-op on one process).
    const dist::StepSync synced = dp.sync_step(ptensors, terms, signals && StopSignals::requested());
    const double loss = terms.empty() ? 0.0 : terms.back().second;
    const double grad_norm = clip_grad_norm(ptensors, cfg.optim.grad_clip);
    if (options.on_loss_terms) options.on_loss_terms(st.step + 1, terms);
    // A non-finite loss term or gradient norm skips the step: no update (weights, AdamW
    // moments and AdamW's own step count stay as they were), the gradients are dropped. The
    // batch counts as consumed: the step counter, data position and lr schedule move on as
    // if the step had run, and its metrics record shows the bad values as null. After
    // train.max_bad_steps such steps in a row the run stops with exit code 3 and a
    // checkpoint of the state after the last good update (its step, data position and RNG
    // included), so that a resume retries the failed steps.
    const std::string bad = non_finite_terms(terms, grad_norm);
    const bool skip = !bad.empty();
    if (skip) {
      ++bad_in_a_row;
      spdlog::warn("step {}: non-finite {}; step skipped, no update ({} in a row, train.max_bad_steps {})",
                   st.step + 1, bad, bad_in_a_row, cfg.train.max_bad_steps);
      // An update that overflowed the weights makes every later step bad: skipping cannot
      // help, and the state after that update is no state to keep (nor was it saved).
      const bool weights_broken = !all_finite(ptensors);
      if (weights_broken || bad_in_a_row >= cfg.train.max_bad_steps) {
        progress.finish();
        if (weights_broken) {
          spdlog::error("the weights are no longer finite (the update of step {} overflowed); stopped. Last "
                        "checkpoint with finite weights: {}",
                        last_good.step, latest_checkpoint(run_dir).value_or("none"));
        } else {
          if (dp.is_main()) {
            set_rng_states({last_good_rng.begin(), last_good_rng.end()}, device, "the last good step's RNG");
            result.checkpoint = save_checkpoint(r, last_good, run_dir);
          }
          dp.barrier("checkpoint of the last good step");
          spdlog::error("{} steps in a row had a non-finite loss or gradient; stopped. Last good state (step {}): {}",
                        bad_in_a_row, last_good.step, result.checkpoint);
        }
        result.exit_code = kExitNonFinite;
        result.steps = last_good.step;
        return result;
      }
    } else {
      bad_in_a_row = 0;
      opt.step();
    }
    // Gradients are dropped rather than zeroed (a pass over them saved); every step, a
    // resumed one included, starts from none, and the first backward writes them.
    for (auto& p : ptensors) p.mutable_grad() = at::Tensor();

    st.step += 1;
    st.micro_step += static_cast<int64_t>(batches.size());
    st.tokens += real_tokens;
    st.epoch = st.step / spe;
    st.step_in_epoch = st.step % spe;
    st.elapsed_s = elapsed_before + seconds_since(process_start);
    window_tokens += real_tokens;
    if (!skip) {
      if (first) result.first_loss = loss;
      first = false;
      result.last_loss = loss;
      last_good = st;
      last_good_rng = rng_states(device);
    }

    const double process_s = seconds_since(process_start);
    const double eta = (total - st.step) * process_s / static_cast<double>(st.step - start_step);
    const double win_s = seconds_since(window_start);
    const double tok_s = win_s > 0 ? window_tokens / win_s : 0;
    const bool log_now = cfg.train.log_every > 0 ? (st.step % cfg.train.log_every == 0 || st.step == total)
                                                 : st.step == total;
    if (log_now) {
      StepMetrics sm;
      sm.step = st.step;
      sm.epoch = epoch;
      sm.loss = terms;
      sm.lr = lr;
      sm.grad_norm = grad_norm;
      sm.tokens = st.tokens;
      sm.tokens_per_s = tok_s;
      sm.elapsed_s = st.elapsed_s;
      sm.peak_mem_mb = peak_memory_mb(device);
      if (metrics) metrics->write(sm);
      window_start = Clock::now();
      window_tokens = 0;
    }
    if (dp.is_main()) progress.update(st.step, epoch, loss, lr, tok_s, eta);

    const bool stop = (dp.active() ? synced.stop : signals && StopSignals::requested()) ||
                      (options.stop_after_steps > 0 && st.step >= options.stop_after_steps && st.step < total);
    const bool periodic = cfg.train.save_every > 0 && st.step % cfg.train.save_every == 0;
    if (periodic || stop || st.step == total) {
      // Never a checkpoint of weights that an update overflowed (the next step stops the run).
      if (!all_finite(ptensors)) spdlog::warn("step {}: the weights are not finite; no checkpoint saved", st.step);
      else if (dp.is_main()) result.checkpoint = save_checkpoint(r, st, run_dir);
      dp.barrier("checkpoint of step " + std::to_string(st.step));  // the others wait for rank 0's write
    }
    if (stop) {
      progress.finish();
      result.interrupted = true;
      result.steps = st.step;
      std::string how = options.resume_command.empty() ? "train.resume=auto with the same config" : options.resume_command;
      if (dp.is_main())
        std::fprintf(stderr, "safetune: stopped at step %lld of %lld; checkpoint %s\nresume with: %s\n",
                   (long long)st.step, (long long)total, result.checkpoint.c_str(), how.c_str());
      return result;
    }
  }
  progress.finish();

  // 5. Final weights: the adapter (PEFT) or a complete HF model directory.
  const std::string out = (fs::path(run_dir) / (lora ? "adapter" : "model")).string();
  if (dp.is_main()) export_final(r, run_dir, out);
  dp.barrier("final export");
  result.final_dir = out;
  result.steps = st.step;
  spdlog::info("done: {} steps, final loss {:.4f}; {} written to {}", st.step, result.last_loss,
               lora ? "adapter" : "model", out);
  return result;
}

}  // namespace safetune::train
