// RunConfig: everything a training run reads, as plain nested structs.
//
// A run is described by a YAML file plus key=value overrides that use the same dotted
// names (`optim.lr=3e-5 lora.target_modules=[q_proj,v_proj]`). Every field is listed
// once, in a table in src/train/config.cpp (name, member, type, allowed values, doc);
// parsing, overrides, validation, "did you mean" suggestions and the YAML written back
// into the run directory (config.resolved.yaml) are all driven by that table.
//
// Defaults are the reference PACT setup (Llama-3.1-8B-Instruct, LoRA r 8 / alpha 32 /
// dropout 0.05 on q_proj and v_proj, AdamW lr 3e-5, weight decay 0, 3 epochs, StepLR
// gamma 0.85 per epoch, grad-clip 1.0, batch 8, max length 512, seed 42; constraint
// temperature 2, gate alpha 2 / b 0 / top-p 0.9, prefix emphasis N 8 / tau_d 8).
//
// Every choice is an enum parsed once here from its name: those the loss reads (the
// constraint, pact's reference mix, the constrained positions) are the loss module's, the
// others this module's (below). YAML, overrides, messages and config.resolved.yaml spell
// the names; the code compares the enums. Every rule that involves several fields is
// checked in validate(), and only there.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "safetune/data/columns.h"
#include "safetune/loss/constraint_choices.h"
#include "safetune/loss/gate_options.h"
#include "safetune/model/lora_options.h"
#include "safetune/train/adamw_options.h"

namespace safetune::train {

// The run's own choices, spelled as the names_of lists give them (enumerators differ from
// a name only where the name is a C++ keyword: auto).
// model.dtype: auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16.
enum class ModelDtype { by_device, fp32, bf16, fp16 };
// schedule.type (schedule.h has the formulas).
enum class ScheduleType { constant, linear, cosine, step_lr };
// train.resume: none | auto (continue from output_dir's latest checkpoint).
enum class Resume { none, latest };
// objective.target: weighted (PACT's q) | reference (the reference on S, v only selects S).
enum class Target { weighted, reference };
// objective.reference: auto (adapter_off with LoRA, copy otherwise) | copy | adapter_off |
// cache (reference.h).
enum class ReferenceKind { by_lora, copy, adapter_off, cache };

const std::vector<std::string>& names_of(ModelDtype);
const std::vector<std::string>& names_of(ScheduleType);
const std::vector<std::string>& names_of(Resume);
const std::vector<std::string>& names_of(Target);
const std::vector<std::string>& names_of(ReferenceKind);
// name_of(value) and parse_name<E>(name) for these as for the loss module's choices.
using loss::name_of;
using loss::parse_name;

struct ModelConfig {
  std::string path;           // HF model directory (config.json, *.safetensors, tokenizer)
  ModelDtype dtype = ModelDtype::by_device;  // auto | fp32 | bf16 | fp16
  std::string chat_template;   // file with a chat template overriding the tokenizer's; "" = none
};

struct DataConfig {
  std::string train;            // JSON / JSONL / CSV / TSV records (data/records.h)
  std::string eval;             // optional held-out records; "" = none
  data::ColumnMap columns;      // field -> column of data.train and data.eval; empty = by name
  data::ColumnMap harmful_columns;  // the same for data.harmful (e.g. AdvBench: goal, target)
  int64_t max_length = 512;     // tokens per example (prompt + response), longer ones truncated
  int64_t num_examples = 0;     // examples drawn per run; 0 = all (the reference uses 5000)
  std::string harmful;          // harmful records mixed in; required when harmful_fraction > 0
  double harmful_fraction = 0;  // share of the num_examples that are harmful, in [0, 1]
  bool shuffle = true;          // shuffle example order every epoch
  int64_t seed = 42;            // data order and harmful sampling (separate from train.seed)
};

// The adapter's settings as the LoRA code takes them (r, alpha, dropout, target_modules),
// and whether LoRA is used at all.
struct LoraConfig : model::LoraOptions {
  LoraConfig() { dropout = 0.05; }  // the reference setup's; an adapter read from disk has its own
  bool enabled = true;  // false = full fine-tuning of every weight
};

// The optimizer's own settings (lr, betas, eps, weight decay) as AdamW takes them, and the
// clipping the trainer applies before each update.
struct OptimConfig : AdamWOptions {
  double grad_clip = 1.0;  // max global L2 norm of the gradients; 0 = no clipping
};

struct ScheduleConfig {
  ScheduleType type = ScheduleType::step_lr;  // constant | linear | cosine | step_lr
  int64_t warmup_steps = 0;      // linear ramp from 0, applies to every type
  double gamma = 0.85;           // step_lr: lr * gamma^epoch
  double num_cycles = 0.5;       // cosine: as transformers (0.5 = one half-cosine to 0)
};

struct TrainConfig {
  std::string output_dir = "runs/run";
  int64_t epochs = 3;
  int64_t max_steps = 0;   // optimizer steps; > 0 overrides epochs
  int64_t batch_size = 8;  // examples per micro-batch
  int64_t grad_accum = 1;  // micro-batches per optimizer step
  int64_t seed = 42;       // weight init of adapters, dropout
  int64_t threads = 0;     // 0 = all cores
  std::string device = "cpu";  // cpu | cuda | cuda:N | auto (cuda when a GPU is visible); see device.h
  bool activation_checkpointing = false;
  int64_t log_every = 10;   // optimizer steps between metric lines
  int64_t save_every = 0;   // optimizer steps between checkpoints; 0 = only at the end
  int64_t keep_checkpoints = 0;  // newest checkpoints kept on disk; 0 = all
  Resume resume = Resume::none;  // none | auto (continue from output_dir's latest checkpoint)
  bool overwrite = false;   // allow an output_dir that holds another run
  int64_t max_bad_steps = 5;  // non-finite steps in a row (each skipped, no update) before the run stops
  double dist_timeout_s = 300;  // multi-process runs: a rank silent this long is taken as dead
  // Evaluation during training (train/evaluation.h): at step 0, every eval_every steps and
  // at the last step, on data.eval (validation loss) and train.eval_suite (generation).
  int64_t eval_every = 0;          // optimizer steps between evaluations; 0 = none
  std::string eval_suite;          // suite JSON file, as `safetune eval --suite`; "" = none
  int64_t eval_batch_size = 8;     // prompts generated together (and held-out examples per batch)
  int64_t eval_max_new_tokens = 128;  // answer length of the suite's sets that set none
  std::string eval_refusal_start = "I";        // first-token margin: the refusal's first token ...
  std::string eval_compliance_start = "Sure";  // ... against the compliance's; "" = no margin
  std::string keep_best;    // "METRIC[+METRIC...]:max|min": keep run_dir/best; "" = off
  std::string early_stop;   // "METRIC<BOUND" or "METRIC>BOUND", BOUND a number or Nx (N x first value); "" = off
};

// The gate's settings as the loss takes them (alpha, b, top_p, temperature, prefix_n,
// prefix_tau), and whether it is used at all.
struct GateConfig : loss::GateOptions {
  bool enabled = true;  // false: the reference is always the full-context one
};

struct ObjectiveConfig {
  loss::ConstraintKind constraint = loss::ConstraintKind::none;  // none | pact | kl_full | anchor | safety_mass
  double lambda = 1.0;              // loss = CE + lambda * constraint
  std::string tokens;               // tokens.json from `safetune tokens`; pact, anchor and probe need it
  // T of the constraint's KL (scaled by T^2). Unless the file or an override sets it, the
  // constraint's default (its descriptor: 2, safety_mass 1), as is reference_mix's
  // (gated, safety_mass full).
  double temperature = 2.0;
  loss::Positions positions = loss::Positions::all;  // all | first_n | probe: response positions constrained
  int64_t first_n = 8;              // positions = first_n: how many
  double probe_tau = 0.5;           // positions = probe: min reference probability mass on S
  Target target = Target::weighted;  // weighted (PACT's q) | reference (the reference on S, v only selects S)
  loss::ReferenceMix reference_mix = loss::ReferenceMix::gated;  // gated | full | post (pact, safety_mass)
  ReferenceKind reference = ReferenceKind::by_lora;  // auto | copy | adapter_off | cache
  std::string ref_cache;            // reference = cache: file from `safetune ref-cache`
  bool fused = true;                // fused safety-column kernels instead of full-vocab logits
  GateConfig gate;
};

struct RunConfig {
  ModelConfig model;
  DataConfig data;
  LoraConfig lora;
  OptimConfig optim;
  ScheduleConfig schedule;
  TrainConfig train;
  ObjectiveConfig objective;
};

// Parses a YAML file, applies `overrides` ("dotted.key=value", value in YAML flow syntax),
// validates. Throws InputError naming the file and line, or the override.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The same from YAML text; `where` names it in errors (normally the file name).
RunConfig parse_run_config(const std::string& yaml_text, const std::string& where,
                           const std::vector<std::string>& overrides = {});

// Applies one "key=value" override to `cfg` (no validation).
void apply_override(RunConfig& cfg, const std::string& key_equals_value);

// Value and cross-field checks (also run by load/parse). Throws InputError.
void validate(const RunConfig& cfg, const std::string& where = "config");

// The resolved config as YAML, every field present with its doc as a comment; parsing it
// back gives an identical RunConfig.
std::string to_yaml(const RunConfig& cfg);

// Field-by-field equality (doubles compared exactly).
bool same_config(const RunConfig& a, const RunConfig& b);

// The closest valid dotted key to `key` ("" when nothing is close), for error messages.
std::string suggest_key(const std::string& key);

// One line per field: name, type, default, doc (for --help style listings).
std::string config_reference();

}  // namespace safetune::train
