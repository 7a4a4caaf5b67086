// The training loop: `safetune train CONFIG.yaml key=value ...`.
//
//   model + tokenizer + chat template -> records -> examples -> Batcher
//   for each optimizer step: grad_accum micro-batches of forward -> objective -> backward,
//   clip by global norm, AdamW at the scheduled lr; metrics, progress, checkpoints.
//
// Everything the user can get wrong is checked before the first step (InputError). The
// run directory is refused when it holds another run, unless train.resume=auto (continue
// from its latest checkpoint) or train.overwrite=true. A resumed run restores weights,
// optimizer moments, step/epoch/data position and the RNG, so on CPU it ends bitwise
// identical to one that never stopped. With train.eval_every, the model is evaluated
// along the way (evaluation.h): records in metrics.jsonl, the best weights in
// run_dir/best (train.keep_best), an early stop (train.early_stop).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "safetune/train/config.h"
#include "safetune/train/metrics.h"

namespace safetune::train {

class SuiteEvaluation;  // evaluation.h

struct TrainOptions {
  // The command that resumes this run, printed when it is interrupted.
  std::string resume_command;
  // Stop as if interrupted after this many optimizer steps in total (0 = never); tests.
  int64_t stop_after_steps = 0;
  // Progress display: -1 auto (TTY or not), 0 plain lines, 1 redrawn bar.
  int progress_tty = -1;
  // Install SIGINT / SIGTERM handlers (the CLI does; tests in-process may not want to).
  bool handle_signals = true;
  // Tests: sees (and may change) each step's loss terms before they are checked for
  // non-finite values; `step` counts from 1.
  std::function<void(int64_t step, StepLoss& terms)> on_loss_terms;
  // train.eval_suite's evaluation (eval/training_eval.h makes it); required when the
  // config names a suite, since generating and judging answers is the eval module's.
  std::shared_ptr<SuiteEvaluation> suite;
};

struct TrainResult {
  int exit_code = 0;          // 0, or kExitNonFinite when the loss or gradients blew up
  bool interrupted = false;   // stopped early (signal or stop_after_steps), checkpoint saved
  int64_t steps = 0;          // optimizer steps done, in all
  int64_t total_steps = 0;
  double last_loss = 0;       // the last step's loss (total)
  double first_loss = 0;      // the first step of this process
  std::string run_dir;
  std::string checkpoint;     // the last checkpoint written ("" if none)
  std::string final_dir;      // run_dir/adapter or run_dir/model when the run completed
  bool early_stopped = false; // train.early_stop ended it (final_dir written)
  std::string stop_reason;    // why, when early_stopped
};

// setup_run (setup.h), then the steps. InputError before the first step for bad input.
TrainResult run_training(const RunConfig& cfg, const TrainOptions& options = {});

}  // namespace safetune::train
