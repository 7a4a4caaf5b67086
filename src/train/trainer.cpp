// The training loop. run_training() reads top to bottom: set-up (setup.h), the start,
// then one optimizer step after another, each with its bad-step handling, metrics and
// checkpoints, and the final export. The pieces follow it in that order.
#include "safetune/train/trainer.h"

#include <ATen/ATen.h>
#include "safetune/core/log.h"
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "safetune/core/device.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/data/batch.h"
#include "safetune/io/tensor_io.h"
#include "safetune/model/export.h"
#include "safetune/model/lora.h"
#include "safetune/model/transformer.h"
#include "safetune/train/checkpoint.h"
#include "safetune/train/evaluation.h"
#include "safetune/train/metrics.h"
#include "safetune/train/progress.h"
#include "safetune/train/setup.h"
#include "safetune/train/signals.h"

namespace safetune::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// The micro-batches of one optimizer step and their token counts.
struct StepBatches {
  int64_t epoch = 0;
  std::vector<data::Batch> batches;
  int64_t trained = 0;  // trained tokens of the step (the weights of its micro-batches)
  int64_t real = 0;     // real (non-padding) tokens
};

// One step's forward/backward, summed over the ranks: the objective's terms, the gradient
// norm before clipping, and whether any rank asked to stop.
struct StepOutcome {
  StepLoss terms;
  double loss = 0;
  double grad_norm = 0;
  bool stop_requested = false;
};

// Non-finite steps: how many in a row, and the state (with its RNG) after the last good
// update, which is what a run stopped by them saves.
struct BadSteps {
  int64_t in_a_row = 0;
  TrainerState last_good;
  std::vector<std::pair<std::string, at::Tensor>> last_good_rng;
};

// Throughput and elapsed time of this process.
struct Timing {
  Clock::time_point process_start = Clock::now();
  double elapsed_before = 0;  // of the processes before a resume
  int64_t start_step = 0;
  Clock::time_point window_start = Clock::now();  // since the last metrics record
  int64_t window_tokens = 0;
};

TrainerState start(Run& r);
void open_run_directory(const Run& r, const TrainerState& st, std::optional<MetricsLog>& metrics);
void log_start(const Run& r);
StepBatches step_batches(const Run& r, const data::Batcher& batcher, const TrainerState& st);
StepOutcome forward_backward(Run& r, const StepBatches& b, const TrainOptions& options, int64_t step);
std::string non_finite_terms(const StepLoss& terms, double grad_norm);
bool stop_after_bad_step(Run& r, BadSteps& bad, const std::string& what, int64_t step, Progress& progress,
                         TrainResult& result);
void advance(TrainerState& st, const StepBatches& b, int64_t steps_per_epoch, const Timing& t);
void report(const Run& r, const TrainerState& st, const StepBatches& b, const StepOutcome& s, double lr, Timing& t,
            std::optional<MetricsLog>& metrics, Progress& progress);
bool evaluate_if_due(Run& r, const Evaluation& e, TrainerState& st, std::optional<MetricsLog>& metrics,
                     Progress& progress, bool tty);
void checkpoint_if_due(Run& r, const TrainerState& st, bool stop, TrainResult& result);
std::string save_checkpoint(const Run& r, const TrainerState& st);
std::string resume_note(const Run& r);
TrainerState restore_checkpoint(Run& r, const std::string& dir, const TrainerState& expected);
std::string export_final(const Run& r);
bool all_finite(const std::vector<at::Tensor>& tensors);

// A stop signal (or TrainOptions::stop_after_steps) ended the run with a checkpoint: how to resume.
TrainResult interrupted(const Run& r, const TrainerState& st, const TrainOptions& options, TrainResult result) {
  result.interrupted = true;
  result.steps = st.step;
  const std::string how =
      options.resume_command.empty() ? "train.resume=auto with the same config" : options.resume_command;
  if (r.dp->is_main())
    std::fprintf(stderr, "safetune: stopped at step %lld of %lld; checkpoint %s\nresume with: %s\n",
                 (long long)st.step, (long long)r.sizes.total_steps, result.checkpoint.c_str(), how.c_str());
  return result;
}

// The run is done (or stopped early by its rule): the final weights, the adapter (PEFT) or
// a complete HF model directory.
TrainResult finished(const Run& r, const TrainerState& st, TrainResult result) {
  result.final_dir = export_final(r);
  result.steps = st.step;
  result.early_stopped = st.eval.stopped;
  result.stop_reason = st.eval.stop_reason;
  log::info("done: {} steps, final loss {:.4f}; {} written to {}", st.step, result.last_loss,
            r.lora ? "adapter" : "model", result.final_dir);
  return result;
}

}  // namespace

// ---------------------------------------------------------------------------- the loop

TrainResult run_training(const RunConfig& cfg, const TrainOptions& options) {
  Run r = setup_run(cfg);
  const Evaluation evaluation = setup_evaluation(r, options.suite);  // before the run directory is written
  TrainerState st = start(r);
  std::optional<MetricsLog> metrics;  // rank 0's
  open_run_directory(r, st, metrics);
  log_start(r);
  std::optional<StopSignals> signals;
  if (options.handle_signals) signals.emplace();
  const bool tty = options.progress_tty < 0 ? Progress::stderr_is_tty() : options.progress_tty == 1;
  const int64_t total = r.sizes.total_steps;
  Progress progress(total, cfg.train.log_every, tty);
  const data::Batcher batcher(r.examples, cfg.train.batch_size, static_cast<uint64_t>(cfg.data.seed),
                              cfg.data.shuffle, false, data::pad_id_for(*r.tokenizer));
  TrainResult result;
  result.run_dir = r.dir.path;
  result.total_steps = total;
  Timing timing;
  timing.elapsed_before = st.elapsed_s;
  timing.start_step = st.step;
  BadSteps bad{0, st, rng_states(r.device)};
  bool first = true;
  // The model before any update: the baseline that early_stop's relative bounds refer to.
  bool stopped_early = st.eval.stopped;
  if (stopped_early) log::info("{}: the run stopped early ({}); nothing left to train", r.dir.path, st.eval.stop_reason);
  else if (st.step == 0) stopped_early = evaluate_if_due(r, evaluation, st, metrics, progress, tty);
  if (stopped_early && st.step == 0) checkpoint_if_due(r, st, true, result);

  while (!stopped_early && st.step < total) {
    const StepBatches b = step_batches(r, batcher, st);
    const double lr = r.schedule->lr(st.step, b.epoch);
    r.optimizer->set_lr(lr);
    const StepOutcome s = forward_backward(r, b, options, st.step);
    // A non-finite loss term or gradient norm skips the step: no update (weights, AdamW
    // moments and AdamW's own step count stay as they were), the gradients are dropped. The
    // batch counts as consumed: the step counter, data position and lr schedule move on as
    // if the step had run, and its metrics record shows the bad values as null.
    const std::string non_finite = non_finite_terms(s.terms, s.grad_norm);
    const bool skip = !non_finite.empty();
    if (skip && stop_after_bad_step(r, bad, non_finite, st.step + 1, progress, result)) return result;
    if (!skip) {
      bad.in_a_row = 0;
      r.optimizer->step();
    }
    // Gradients are dropped rather than zeroed (a pass over them saved); every step, a
    // resumed one included, starts from none, and the first backward writes them.
    for (auto& p : r.param_tensors) p.mutable_grad() = at::Tensor();

    advance(st, b, r.sizes.steps_per_epoch, timing);
    if (!skip) {
      if (first) result.first_loss = s.loss;
      first = false;
      result.last_loss = s.loss;
      bad.last_good = st;
      bad.last_good_rng = rng_states(r.device);
    }
    report(r, st, b, s, lr, timing, metrics, progress);
    const Clock::time_point eval_start = Clock::now();
    stopped_early = evaluate_if_due(r, evaluation, st, metrics, progress, tty);
    timing.window_start += Clock::now() - eval_start;  // tokens/s counts training time only
    if (!skip) bad.last_good.eval = st.eval;  // the evaluation is of that state (and draws no random numbers)

    const bool stop = !stopped_early &&
                      ((r.dp->active() ? s.stop_requested : signals && StopSignals::requested()) ||
                       (options.stop_after_steps > 0 && st.step >= options.stop_after_steps && st.step < total));
    checkpoint_if_due(r, st, stop || stopped_early, result);
    if (stop) {
      progress.finish();
      return interrupted(r, st, options, result);
    }
  }
  progress.finish();
  return finished(r, st, result);
}

namespace {

// ---------------------------------------------------------------------------- the start

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void clear_run(const std::string& dir) {
  for (const char* name : {"checkpoints", "latest", "metrics.jsonl", "config.resolved.yaml", "adapter", "model"})
    fs::remove_all(fs::path(dir) / name);
  fs::remove_all(fs::path(dir) / "best");
  clean_stale_temporaries(dir);
}

// The state to start from: a fresh one, or the checkpoint's (weights, AdamW, RNG) on
// resume. Every rank then holds rank 0's weights; dropout streams differ between ranks.
TrainerState start(Run& r) {
  const RunConfig& cfg = r.cfg;
  const dist::DataParallel& dp = *r.dp;
  TrainerState st;
  st.total_steps = r.sizes.total_steps;
  st.steps_per_epoch = r.sizes.steps_per_epoch;
  st.num_examples = r.sizes.examples;
  seed_cpu_rng(static_cast<uint64_t>(cfg.train.seed));
  if (r.dir.resume_from) {
    st = restore_checkpoint(r, *r.dir.resume_from, st);
    log::info("resuming {} from step {} of {}", r.dir.path, st.step, st.total_steps);
  } else if (r.dir.existing && cfg.train.overwrite) {
    log::warn("{}: replacing the run there (train.overwrite=true)", r.dir.path);
    if (dp.is_main()) clear_run(r.dir.path);
  }
  r.dp->broadcast(r.param_tensors);
  const uint64_t rank_seed = static_cast<uint64_t>(cfg.train.seed) * 1000003u + dp.rank() * 7919u + st.step;
  if (dp.rank() > 0) seed_cpu_rng(rank_seed);
  // Dropout on a GPU draws from the CUDA generator: seeded per rank too; on resume rank 0
  // continues the stream its checkpoint saved, the others reseed as for the CPU's.
  if (r.device.is_cuda() && (!r.dir.resume_from || dp.rank() > 0)) torch::cuda::manual_seed(rank_seed);
  return st;
}

// Rank 0 writes the run directory: its resolved config and the metrics log (continued
// after the resumed step).
void open_run_directory(const Run& r, const TrainerState& st, std::optional<MetricsLog>& metrics) {
  if (!r.dp->is_main()) return;
  const std::string& run_dir = r.dir.path;
  ensure_output_dir(run_dir);
  // Also a run killed before its first checkpoint (or its first config write) may have
  // left temporaries; they are stale here whether or not this is a resume.
  clean_stale_temporaries(run_dir);
  write_file_atomic((fs::path(run_dir) / "config.resolved.yaml").string(), to_yaml(r.cfg));
  metrics.emplace((fs::path(run_dir) / "metrics.jsonl").string(), r.dir.resume_from ? st.step : -1);
}

void log_start(const Run& r) {
  const RunConfig& cfg = r.cfg;
  const model::Transformer& m = *r.model.model;
  if (r.dp->active())
    log::info("data parallel: {} processes, {} x {} examples per step, micro-batch i on rank i mod {}",
                 r.dp->world_size(), cfg.train.grad_accum, cfg.train.batch_size, r.dp->world_size());
  int64_t trainable = 0;
  for (const auto& p : r.param_tensors) trainable += p.numel();
  log::info("{}: {} parameters, {} trainable ({}), {} examples, {} steps ({} per epoch), {} threads, {} {}",
               cfg.model.path, m.num_parameters(), trainable, r.lora ? "LoRA" : "full fine-tuning", r.sizes.examples,
               r.sizes.total_steps, r.sizes.steps_per_epoch, r.threads, r.device.str(), c10::toString(m.dtype()));
  const Objective& o = r.objective;
  if (o.reference)
    log::info("constraint {} (lambda {}) on {} safety tokens, reference {}", loss::name_of(o.spec.kind),
                 o.spec.lambda, o.spec.S.numel(), o.reference->name());
}

// ---------------------------------------------------------------------------- one step

StepBatches step_batches(const Run& r, const data::Batcher& batcher, const TrainerState& st) {
  const int64_t ga = r.cfg.train.grad_accum, spe = r.sizes.steps_per_epoch;
  StepBatches b;
  b.epoch = st.step / spe;
  const int64_t m0 = (st.step % spe) * ga, m1 = std::min(m0 + ga, r.sizes.micro_per_epoch);
  for (int64_t i = m0; i < m1; ++i) {
    b.batches.push_back(data::to_device(batcher.batch(b.epoch, i), r.device));  // no copy on CPU
    b.trained += trained_tokens(b.batches.back());
    b.real += b.batches.back().attention_mask.sum().item<int64_t>();
  }
  return b;
}

// Forward/backward per micro-batch, each weighted by its share of the trained tokens, so
// that accumulation equals one large batch; then the sum over the ranks and the clip.
StepOutcome forward_backward(Run& r, const StepBatches& b, const TrainOptions& options, int64_t step) {
  StepOutcome s;
  model::Transformer& m = *r.model.model;
  std::vector<double> sums;  // StepLoss::flat's layout: the total, then compute_objective's terms
  for (const data::Batch& batch : b.batches) {
    if (!r.dp->owns(&batch - b.batches.data())) continue;
    const int64_t n = trained_tokens(batch);
    if (n == 0) continue;
    const double w = static_cast<double>(n) / static_cast<double>(b.trained);
    LossTerms lt = compute_objective(r.objective, m, batch);
    (lt.total * w).backward();
    if (sums.empty()) sums.assign(1 + lt.terms.size(), 0.0);
    for (size_t k = 0; k < lt.terms.size(); ++k) sums[1 + k] += w * lt.terms[k].second.item<double>();
    sums[0] += w * lt.total.item<double>();
  }
  // Sum the weighted gradients and loss terms of all ranks (no-op on one process), and
  // whether any of them was asked to stop (the CLI's signal handlers).
  const bool stop_wish = options.handle_signals && StopSignals::requested();
  s.stop_requested = r.dp->sync_step(r.param_tensors, sums, stop_wish).stop;
  s.terms = StepLoss::from_flat(r.objective.spec.kind, sums);
  s.loss = s.terms.total;  // 0 when nothing is known
  s.grad_norm = clip_grad_norm(r.param_tensors, r.cfg.optim.grad_clip);
  if (options.on_loss_terms) options.on_loss_terms(step + 1, s.terms);
  return s;
}

// "ce (nan), gradient norm (inf)": the loss terms and the gradient norm that are not
// finite; "" when all are.
std::string non_finite_terms(const StepLoss& terms, double grad_norm) {
  std::string out;
  auto add = [&out](const std::string& name, double v) {
    if (!std::isfinite(v)) out += (out.empty() ? "" : ", ") + name + " (" + log::format("{}", v) + ")";
  };
  for (const auto& [name, v] : terms.terms()) add(name, v);
  // Finite terms whose sum overflowed.
  if (out.empty() && terms.known != StepLoss::Known::nothing) add("total loss", terms.total);
  add("gradient norm", grad_norm);
  return out;
}

// A skipped step (`what` names its non-finite values). After train.max_bad_steps such
// steps in a row the run stops with exit code 3 and a checkpoint of the state after the
// last good update (its step, data position and RNG included), so that a resume retries
// the failed steps; true then, with `result` filled in and the progress line ended.
bool stop_after_bad_step(Run& r, BadSteps& bad, const std::string& what, int64_t step, Progress& progress,
                         TrainResult& result) {
  ++bad.in_a_row;
  log::warn("step {}: non-finite {}; step skipped, no update ({} in a row, train.max_bad_steps {})", step, what,
               bad.in_a_row, r.cfg.train.max_bad_steps);
  // An update that overflowed the weights makes every later step bad: skipping cannot
  // help, and the state after that update is no state to keep (nor was it saved).
  const bool weights_broken = !all_finite(r.param_tensors);
  if (!weights_broken && bad.in_a_row < r.cfg.train.max_bad_steps) return false;
  progress.finish();
  if (weights_broken) {
    log::error("the weights are no longer finite (the update of step {} overflowed); stopped. Last "
                  "checkpoint with finite weights: {}",
                  bad.last_good.step, latest_checkpoint(r.dir.path).value_or("none"));
  } else {
    if (r.dp->is_main()) {
      set_rng_states({bad.last_good_rng.begin(), bad.last_good_rng.end()}, r.device, "the last good step's RNG");
      result.checkpoint = save_checkpoint(r, bad.last_good);
    }
    r.dp->barrier("checkpoint of the last good step");
    log::error("{} steps in a row had a non-finite loss or gradient; stopped. Last good state (step {}): {}",
                  bad.in_a_row, bad.last_good.step, result.checkpoint);
  }
  result.exit_code = kExitNonFinite;
  result.steps = bad.last_good.step;
  return true;
}

void advance(TrainerState& st, const StepBatches& b, int64_t steps_per_epoch, const Timing& t) {
  st.step += 1;
  st.micro_step += static_cast<int64_t>(b.batches.size());
  st.tokens += b.real;
  st.epoch = st.step / steps_per_epoch;
  st.step_in_epoch = st.step % steps_per_epoch;
  st.elapsed_s = t.elapsed_before + seconds_since(t.process_start);
}

// The metrics record (every train.log_every steps and the last) and the progress line.
void report(const Run& r, const TrainerState& st, const StepBatches& b, const StepOutcome& s, double lr, Timing& t,
            std::optional<MetricsLog>& metrics, Progress& progress) {
  const int64_t total = r.sizes.total_steps, every = r.cfg.train.log_every;
  t.window_tokens += b.real;
  const double process_s = seconds_since(t.process_start);
  const double eta = (total - st.step) * process_s / static_cast<double>(st.step - t.start_step);
  const double win_s = seconds_since(t.window_start);
  const double tok_s = win_s > 0 ? t.window_tokens / win_s : 0;
  if (every > 0 ? (st.step % every == 0 || st.step == total) : st.step == total) {
    StepMetrics sm;
    sm.step = st.step;
    sm.epoch = b.epoch;
    sm.loss = s.terms;
    sm.lr = lr;
    sm.grad_norm = s.grad_norm;
    sm.tokens = st.tokens;
    sm.tokens_per_s = tok_s;
    sm.elapsed_s = st.elapsed_s;
    sm.peak_mem_mb = peak_memory_mb(r.device);
    if (metrics) metrics->write(sm);
    t.window_start = Clock::now();
    t.window_tokens = 0;
  }
  if (r.dp->is_main()) progress.update(st.step, b.epoch, s.loss, lr, tok_s, eta);
}

// ---------------------------------------------------------------------------- evaluation

void save_adapter(const Run& r, const std::string& dir);

// run_dir/best: the weights as the final export writes them, and eval.json (the step, the
// rule, its score and every metric), replaced atomically; rank 0 writes.
void save_best(const Run& r, const BestRule& rule, double score, const EvalMetrics& rec) {
  const std::string out = (fs::path(r.dir.path) / "best").string(), tmp = out + ".tmp";
  try {
    fs::remove_all(tmp);
    if (r.lora) {
      save_adapter(r, tmp);
    } else {
      at::ScalarType stored = at::kFloat;
      const std::string& td = r.model.model->config().torch_dtype;
      if (!td.empty()) stored = model::parse_torch_dtype(td, r.cfg.model.path + "/config.json");
      model::write_model_dir(tmp, *r.model.model, r.cfg.model.path, stored, /*replace=*/true);
    }
    const nlohmann::json j = {{"step", rec.step}, {"keep_best", rule.text}, {"score", score},
                              {"metrics", nlohmann::json::parse(eval_metrics_json(rec))["metrics"]}};
    write_file_atomic((fs::path(tmp) / "eval.json").string(), j.dump(2) + "\n");
    replace_dir(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);  // nothing half-written left on a full disk
    rethrow_noting("best/ of step " + std::to_string(rec.step) + " not written; " + resume_note(r));
  }
}

// "eval at step 20: generate advbench 16/32", redrawn on a terminal, else one line per
// finished set (rank 0's).
EvalProgress eval_progress(const Run& r, int64_t step, bool tty) {
  if (!r.dp->is_main()) return nullptr;
  return [step, tty](const std::string& what, int64_t done, int64_t total) {
    if (!tty && done != total) return;
    std::fprintf(stderr, "%seval at step %lld: %s %lld/%lld%s", tty ? "\r" : "", (long long)step, what.c_str(),
                 (long long)done, (long long)total, tty && done != total ? "   " : "   \n");
    std::fflush(stderr);
  };
}

// When an evaluation is due after st.step steps: the record, the best weights, the early
// stop (true: stop now; the reason is in st.eval). Every rank decides alike: the metrics
// are the same everywhere.
bool evaluate_if_due(Run& r, const Evaluation& e, TrainerState& st, std::optional<MetricsLog>& metrics,
                     Progress& progress, bool tty) {
  if (!evaluation_due(e, st.step, r.sizes.total_steps)) return false;
  progress.finish();
  const Clock::time_point t0 = Clock::now();
  EvalMetrics rec;
  rec.step = st.step;
  rec.epoch = st.step == 0 ? 0 : (st.step - 1) / r.sizes.steps_per_epoch;  // of the last step trained
  rec.metrics = evaluate_now(r, e, eval_progress(r, st.step, tty));
  rec.eval_s = seconds_since(t0);
  if (metrics) metrics->write(rec);
  if (r.dp->is_main())
    std::fprintf(stderr, "eval at step %lld: %s  (%.1f s)\n", (long long)st.step, headline(rec.metrics).c_str(), rec.eval_s);
  for (const auto& [k, v] : rec.metrics)
    if (std::isfinite(v)) st.eval.first.emplace(k, v);  // kept only the first time
  if (e.keep_best) {
    const std::optional<double> score = score_of(*e.keep_best, rec.metrics);
    if (score && is_better(*e.keep_best, *score, st.eval.best_score)) {
      st.eval.best_score = score;
      st.eval.best_step = st.step;
      if (r.dp->is_main()) save_best(r, *e.keep_best, *score, rec);
      r.dp->barrier("best weights of step " + std::to_string(st.step));
      log::info("best so far ({} = {:.6g}): {}/best", e.keep_best->text, *score, r.dir.path);
    }
  }
  if (e.early_stop) {
    const StopRule& rule = *e.early_stop;
    auto first = st.eval.first.find(rule.metric);
    if (first != st.eval.first.end() && crosses(rule, rec.metrics, first->second)) {
      st.eval.stopped = true;
      st.eval.stop_reason = log::format("{} = {:.6g} {} {:.6g}{} at step {} (train.early_stop = {})", rule.metric,
                                        rec.metrics.at(rule.metric), rule.below ? "<" : ">",
                                        stop_bound(rule, first->second),
                                        rule.relative ? log::format(", {} x its first value {:.6g}", rule.bound, first->second) : "",
                                        st.step, rule.text);
      if (r.dp->is_main()) std::fprintf(stderr, "safetune: early stop: %s\n", st.eval.stop_reason.c_str());
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------- checkpoints

// Every train.save_every steps, at a stop and at the end; rank 0 writes, the others wait.
void checkpoint_if_due(Run& r, const TrainerState& st, bool stop, TrainResult& result) {
  const int64_t every = r.cfg.train.save_every;
  if (!(every > 0 && st.step % every == 0) && !stop && st.step != r.sizes.total_steps) return;
  // Never a checkpoint of weights that an update overflowed (the next step stops the run).
  if (!all_finite(r.param_tensors)) log::warn("step {}: the weights are not finite; no checkpoint saved", st.step);
  else if (r.dp->is_main()) {
    try {
      result.checkpoint = save_checkpoint(r, st);
    } catch (...) {
      rethrow_noting("checkpoint of step " + std::to_string(st.step) + " not saved; " + resume_note(r));
    }
  }
  r.dp->barrier("checkpoint of step " + std::to_string(st.step));
}

// After a failed write: where train.resume=auto would continue from.
std::string resume_note(const Run& r) {
  std::optional<std::string> latest;
  try {
    latest = latest_checkpoint(r.dir.path);
  } catch (const std::exception&) {
  }
  if (!latest) return "no checkpoint saved yet";
  return "train.resume=auto continues from " + fs::path(*latest).lexically_relative(r.dir.path).string();
}

// The adapter as PEFT saves it, in fp32: for bf16 adapters, AdamW's fp32 master copies,
// which carry the updates smaller than a bf16 ulp that their rounding drops.
void save_adapter(const Run& r, const std::string& dir) {
  model::save_adapter(dir, *r.model.model, r.lora_spec, r.cfg.model.path,
                      [&](const at::Tensor& t) { return r.optimizer->master_of(t); });
}

// The checkpoint's files, into the temporary directory `dir`.
void write_checkpoint_files(const Run& r, const TrainerState& st, const std::string& dir) {
  const fs::path d(dir);
  model::Transformer& m = *r.model.model;
  if (r.lora) save_adapter(r, dir);
  else model::save_model(dir, m, m.dtype());
  std::vector<std::pair<std::string, at::Tensor>> opt_state;
  for (auto& [name, t] : r.optimizer->state()) opt_state.emplace_back(name, t.detach().to(at::kCPU).contiguous());
  io::save_tensors((d / "optimizer.safetensors").string(), opt_state);
  io::save_tensors((d / "rng.safetensors").string(), rng_states(m.device()));
  write_file_atomic((d / "trainer_state.json").string(), trainer_state_json(st));
  write_file_atomic((d / "config.resolved.yaml").string(), to_yaml(r.cfg));
}

std::string save_checkpoint(const Run& r, const TrainerState& st) {
  const std::string& run_dir = r.dir.path;
  const std::string tmp = begin_checkpoint(run_dir, st.step);
  std::string path;
  try {
    write_checkpoint_files(r, st, tmp);
    path = commit_checkpoint(run_dir, tmp, st.step);
  } catch (...) {
    // A full disk or a failing one: the half-written directory goes now rather than at
    // the next start, so that the space it took is free again. `latest` is untouched.
    discard_checkpoint(tmp);
    throw;
  }
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
  r.optimizer->load_state(std::vector<std::pair<std::string, at::Tensor>>(o.begin(), o.end()),
                          (d / "optimizer.safetensors").string());
  const std::string rng_file = (d / "rng.safetensors").string();
  set_rng_states(io::load_tensors(rng_file), r.model.model->device(), rng_file);
  return st;
}

// run_dir/adapter (PEFT) or run_dir/model (a complete HF directory in the stored dtype),
// written by rank 0 while the others wait; returns its path.
std::string export_final(const Run& r) {
  const std::string out = (fs::path(r.dir.path) / (r.lora ? "adapter" : "model")).string();
  if (r.dp->is_main()) {
    try {
      if (r.lora) {
        const std::string tmp = out + ".tmp";
        fs::remove_all(tmp);
        try {
          save_adapter(r, tmp);
          replace_dir(tmp, out);
        } catch (...) {
          std::error_code ec;
          fs::remove_all(tmp, ec);  // nothing half-written left on a full disk
          throw;
        }
      } else {
        at::ScalarType stored = at::kFloat;
        const std::string& td = r.model.model->config().torch_dtype;
        if (!td.empty()) stored = model::parse_torch_dtype(td, r.cfg.model.path + "/config.json");
        model::write_model_dir(out, *r.model.model, r.cfg.model.path, stored, /*replace=*/true);
      }
    } catch (...) {
      // The last checkpoint is of the last step: a resume only writes the export.
      rethrow_noting(std::string(r.lora ? "adapter/" : "model/") + " not written; " + resume_note(r));
    }
  }
  r.dp->barrier("final export");
  return out;
}

bool all_finite(const std::vector<at::Tensor>& tensors) {
  for (const at::Tensor& t : tensors)
    if (!at::isfinite(t.detach()).all().item<bool>()) return false;
  return true;
}

}  // namespace

}  // namespace safetune::train
