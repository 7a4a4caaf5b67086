// Training checkpoints: one directory per saved step, written atomically.
//
// Layout of a run directory:
//   config.resolved.yaml      the run's config, every field
//   metrics.jsonl             one JSON record per logged step
//   checkpoints/step-00000010/
//       adapter_config.json + adapter_model.safetensors   (LoRA: a PEFT adapter)
//       or config.json + model.safetensors                 (full fine-tuning)
//       optimizer.safetensors   AdamW moments and step counts, by parameter name
//       rng.safetensors         the torch generator states (dropout): CPU, and CUDA's on a GPU
//       trainer_state.json      step, epoch, data position, tokens, elapsed time, evaluation state
//       config.resolved.yaml
//   latest                    "checkpoints/step-00000010": written last, atomically
//   best/                     train.keep_best: the best evaluated weights (adapter or model) + eval.json
//   adapter/ or model/        the final weights
//
// A checkpoint is built in a temporary directory beside its final place and renamed into
// it; `latest` is replaced after the rename. A crash at any point leaves either the old or
// the new checkpoint reachable through `latest`, never a partial one.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "safetune/train/eval_rules.h"

namespace safetune::train {

struct TrainerState {
  int64_t step = 0;           // optimizer steps done
  int64_t epoch = 0;          // epoch of the next micro-batch
  int64_t step_in_epoch = 0;  // optimizer steps done within that epoch
  int64_t micro_step = 0;     // micro-batches done in all
  int64_t tokens = 0;         // real (non-padding) tokens processed
  double elapsed_s = 0;       // training time so far, summed over every process of the run
  int64_t total_steps = 0;
  int64_t steps_per_epoch = 0;
  int64_t num_examples = 0;
  EvalState eval;             // what train.keep_best and train.early_stop remember
};

std::string trainer_state_json(const TrainerState& s);
// InputError naming `where` for a malformed file.
TrainerState parse_trainer_state(const std::string& text, const std::string& where);

// "checkpoints/step-00000010" (relative to the run directory).
std::string checkpoint_relpath(int64_t step);

// A fresh temporary directory for a checkpoint of `step` inside run_dir/checkpoints.
std::string begin_checkpoint(const std::string& run_dir, int64_t step);
// Removes a temporary directory of begin_checkpoint whose writing failed (a full disk), so
// that nothing half-written stays behind; errors removing it are ignored.
void discard_checkpoint(const std::string& temp_dir);
// Renames the temporary directory into place (replacing an older one of the same step),
// then points run_dir/latest at it. Returns the checkpoint's path.
std::string commit_checkpoint(const std::string& run_dir, const std::string& temp_dir, int64_t step);

// Removes the oldest checkpoints/step-N directories so that at most `keep` remain (0:
// keep all). Called after commit_checkpoint, so `latest` already names the newest one,
// which is never removed.
void prune_checkpoints(const std::string& run_dir, int64_t keep);

// The checkpoint `latest` points to, if any (InputError if it points nowhere).
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Before resuming: removes what a killed process left in run_dir (temporary checkpoint
// directories, *.old copies, temporaries of atomic writes and of the final export), and
// puts back a checkpoint that a kill left renamed aside.
void clean_stale_temporaries(const std::string& run_dir);

// The torch CPU default generator state (a uint8 tensor), and its restoration.
at::Tensor cpu_rng_state();
void set_cpu_rng_state(const at::Tensor& state);
void seed_cpu_rng(uint64_t seed);

// The generators a run on `device` draws from, by checkpoint name: the CPU's
// ("torch_cpu_generator") and, for a CUDA device, that device's ("torch_cuda_generator",
// which LoRA dropout on the GPU uses).
std::vector<std::pair<std::string, at::Tensor>> rng_states(const c10::Device& device);
// Restores them; InputError naming `where` when one the device needs is missing.
void set_rng_states(const std::map<std::string, at::Tensor>& states, const c10::Device& device,
                    const std::string& where);

}  // namespace safetune::train
