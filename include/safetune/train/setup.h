// A training run's set-up, the torchtune way: setup_run(cfg) does everything the loop
// needs before the first step and returns it as one plain struct, so that the loop
// (trainer.cpp) reads top to bottom and `bench step` times exactly the trainer's model,
// parameters, objective and optimizer.
//
// In order, each step checkable before the next, heavier one:
//   validate the config; the run directory's lock (rank 0; core/dir_lock.h: a second
//   process on the same directory is refused at once, before it has loaded anything or
//   changed anything there); data parallelism (WORLD_SIZE, dist/data_parallel.h); the device
//   (core/device.h); threads and the CPU allocator; the run directory's policy (another
//   run there: refused, resumed or replaced); the records; the model (model.dtype = auto:
//   fp32 on CPU, bf16 on CUDA) and its trainable parameters (LoRA adapters, or every
//   weight); tokenizer, chat template and examples (data.eval's too); the objective (tokens.json and the
//   reference); AdamW (fp32 master weights for non-fp32 parameters) and the schedule.
// Nothing is written to the run directory here but its lock file (created with the
// directory when missing; both go again when set-up fails on bad input): the trainer
// writes there once it starts.
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "safetune/core/dir_lock.h"
#include "safetune/data/example.h"
#include "safetune/dist/data_parallel.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/text/chat_template.h"
#include "safetune/train/config.h"
#include "safetune/train/objective.h"
#include "safetune/train/optimizer.h"
#include "safetune/train/schedule.h"

namespace safetune::text {
class Tokenizer;
}

namespace safetune::train {

// Optimizer steps per epoch for `num_examples`, batch size and accumulation (a partial
// accumulation group at the end of an epoch is a step of its own).
int64_t steps_per_epoch(int64_t num_examples, int64_t batch_size, int64_t grad_accum);

// What the run directory holds before the run starts.
struct RunDirectory {
  std::string path;                        // train.output_dir
  bool existing = false;                   // it holds a run (config, checkpoints or latest)
  std::optional<std::string> resume_from;  // train.resume = auto: the checkpoint to continue
};

// The run's sizes, from its examples and batch settings.
struct RunSizes {
  int64_t examples = 0;
  int64_t steps_per_epoch = 0;
  int64_t micro_per_epoch = 0;  // micro-batches per epoch
  int64_t total_steps = 0;      // train.max_steps, else epochs x steps_per_epoch
};

struct Run {
  DirLock lock;  // the run directory's, on rank 0; first here, so released last
  RunConfig cfg;
  c10::Device device{c10::kCPU};
  int threads = 0;
  std::unique_ptr<dist::DataParallel> dp;  // a no-op for a single process
  RunDirectory dir;
  model::LoadedModel model;  // the policy, in train mode
  bool lora = false;
  model::LoraSpec lora_spec;
  std::vector<std::pair<std::string, at::Tensor>> params;  // the trainable parameters, named
  std::vector<at::Tensor> param_tensors;                  // the same, in the same order
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::optional<text::ChatTemplate> chat_template;  // model.chat_template, resolved
  std::vector<data::Example> examples;
  std::vector<data::Example> eval_examples;  // data.eval's held-out records, in file order
  RunSizes sizes;
  Objective objective;
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<Schedule> schedule;
};

// What setup_run prepares besides the model, its parameters, the objective and the
// optimizer. `bench step` wants neither data nor a run directory, and no log lines (its
// stdout is its result).
struct SetupOptions {
  bool data = true;           // records, tokenizer, examples and sizes
  bool run_directory = true;  // the run directory's policy and resume point
  bool log = true;            // the BLAS line (first, as every step time depends on it)
};

// InputError for anything the user can get wrong, before the first step.
Run setup_run(const RunConfig& cfg, const SetupOptions& options = {});

// model.path loaded on `device` in model.dtype (auto: the device's compute dtype).
model::LoadedModel load_run_model(const RunConfig& cfg, const c10::Device& device);

// The trainable parameters of `m`: LoRA adapters attached as lora.* says (seeded by
// train.seed), or every weight for full fine-tuning; the model is put in train mode.
std::vector<std::pair<std::string, at::Tensor>> trainable_parameters(const RunConfig& cfg, model::Transformer& m,
                                                                     model::LoraSpec* spec);

}  // namespace safetune::train
