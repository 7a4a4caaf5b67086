// A training run's set-up (see setup.h).
#include "safetune/train/setup.h"

#include <ATen/ATen.h>
#include "safetune/core/log.h"
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "safetune/core/blas_info.h"
#include "safetune/core/device.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/memory.h"
#include "safetune/core/threads.h"
#include "safetune/data/records.h"
#include "safetune/model/transformer.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"
#include "safetune/train/checkpoint.h"
#include "safetune/train/run_data.h"

namespace safetune::train {
namespace fs = std::filesystem;

int64_t steps_per_epoch(int64_t num_examples, int64_t batch_size, int64_t grad_accum) {
  const int64_t micro = (num_examples + batch_size - 1) / batch_size;
  return (micro + grad_accum - 1) / grad_accum;
}

namespace {

bool holds_run(const std::string& dir) {
  return fs::exists(fs::path(dir) / "config.resolved.yaml") || fs::exists(fs::path(dir) / "latest") ||
         fs::exists(fs::path(dir) / "checkpoints");
}

// Fields that may differ between a run and its resumption: bookkeeping, and the thread
// count (which can change the last bits of BLAS results, so keep it for exact resumes).
RunConfig normalised_for_resume(RunConfig c) {
  c.train.resume = Resume::none;
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

// The run directory's policy: another run there is refused, unless train.resume=auto
// (continue from its latest checkpoint) or train.overwrite=true (replaced when the
// trainer starts).
RunDirectory inspect_run_directory(const RunConfig& cfg, const dist::DataParallel& dp) {
  RunDirectory d;
  d.path = cfg.train.output_dir;
  if (fs::exists(d.path) && !fs::is_directory(d.path)) input_error("train.output_dir", "'" + d.path + "' is a file");
  d.existing = holds_run(d.path);
  if (!d.existing) return d;
  if (cfg.train.resume == Resume::latest) {
    check_resume_config(cfg, d.path);
    if (dp.is_main()) clean_stale_temporaries(d.path);  // what a killed process left behind
    d.resume_from = latest_checkpoint(d.path);
    if (!d.resume_from) log::warn("{}: no checkpoint to resume from; starting from step 0", d.path);
  } else if (!cfg.train.overwrite) {
    input_error("train.output_dir", "'" + d.path +
                                        "' holds another run; continue it with train.resume=auto or replace it "
                                        "with train.overwrite=true");
  }
  return d;
}

RunSizes run_sizes(const RunConfig& cfg, int64_t examples) {
  RunSizes s;
  const int64_t bs = cfg.train.batch_size;
  s.examples = examples;
  s.steps_per_epoch = steps_per_epoch(examples, bs, cfg.train.grad_accum);
  s.micro_per_epoch = (examples + bs - 1) / bs;
  s.total_steps = cfg.train.max_steps > 0 ? cfg.train.max_steps : cfg.train.epochs * s.steps_per_epoch;
  return s;
}

std::unique_ptr<AdamW> make_optimizer(const RunConfig& cfg, const std::vector<std::pair<std::string, at::Tensor>>& params) {
  const AdamWOptions& o = cfg.optim;  // the config's optim section, less grad_clip
  std::vector<at::Tensor> tensors;
  std::vector<std::string> names;
  for (const auto& [n, p] : params) {
    names.push_back(n);
    tensors.push_back(p);
  }
  return std::make_unique<AdamW>(tensors, o, names);
}

}  // namespace

model::LoadedModel load_run_model(const RunConfig& cfg, const c10::Device& device) {
  std::optional<at::ScalarType> dtype;
  if (cfg.model.dtype != ModelDtype::by_device)
    dtype = model::parse_torch_dtype(name_of(cfg.model.dtype), "model.dtype");
  return model::load_model(cfg.model.path, device, dtype);
}

std::vector<std::pair<std::string, at::Tensor>> trainable_parameters(const RunConfig& cfg, model::Transformer& m,
                                                                     model::LoraSpec* spec) {
  std::vector<std::pair<std::string, at::Tensor>> params;
  if (cfg.lora.enabled) {
    static_cast<model::LoraOptions&>(*spec) = cfg.lora;  // the options part, less `enabled`
    params = model::attach_lora(m, *spec, static_cast<uint64_t>(cfg.train.seed), true, "lora");
  } else {
    for (const auto& item : m.named_parameters()) {
      at::Tensor p = item.value();
      p.set_requires_grad(true);
      params.emplace_back(item.key(), p);
    }
  }
  m.train();
  m.activation_checkpointing = cfg.train.activation_checkpointing;
  return params;
}

Run setup_run(const RunConfig& cfg, const SetupOptions& options) {
  validate(cfg);
  Run r;
  r.cfg = cfg;
  // Data parallelism (WORLD_SIZE > 1, see dist/data_parallel.h): the global batch stays
  // batch_size x grad_accum; micro-batch i of a step runs on rank i mod WORLD_SIZE.
  const dist::Env denv = dist::env_from_environment();
  if (cfg.train.grad_accum % denv.world_size != 0)
    input_error("train.grad_accum", std::to_string(cfg.train.grad_accum) + " micro-batches per step cannot be split over " +
                                        std::to_string(denv.world_size) + " processes; use a multiple of " +
                                        std::to_string(denv.world_size));
  // One process per run directory, and the lock before anything slow (joining the other
  // ranks, reading data, loading the model): a second `train` started on the same
  // directory a moment later is refused at once. Rank 0 alone writes there, so it alone
  // holds it; a refused rank 0 leaves its peers to time out joining it.
  if (options.run_directory && denv.rank == 0) r.lock = DirLock::acquire(cfg.train.output_dir, "train.output_dir");
  // A GPU that is not there fails here, before anything is loaded. In a multi-process run
  // a bare "cuda" is cuda:LOCAL_RANK, and the process group is NCCL's for CUDA tensors,
  // Gloo's for CPU ones.
  r.device = resolve_device(cfg.train.device, "train.device", denv.world_size > 1 ? denv.local_rank : -1);
  // Processes on one machine share its cores.
  r.threads = set_compute_threads(cfg.train.threads > 0 ? static_cast<int>(cfg.train.threads)
                                                         : std::max(1, available_cores() / denv.local_world_size));
  keep_freed_memory_for_reuse();
  if (denv.rank != 0) log::set_level(log::Level::error);  // rank 0 alone logs
  if (options.log) log::info("blas: {}", describe_blas(blas_info()));
  r.dp = std::make_unique<dist::DataParallel>(denv, cfg.train.dist_timeout_s, r.device.is_cuda() ? "cuda" : "cpu");
  if (cfg.model.path.empty() || !fs::is_directory(cfg.model.path))
    input_error("model.path", "'" + cfg.model.path + "' is not a model directory");
  std::vector<data::Record> records, eval_records;
  if (options.data) {
    records = select_records(cfg.data);
    eval_records = held_out_records(cfg.data);
    // The suite is read by the caller (the eval module's part); a wrong path is named here too.
    if (!cfg.train.eval_suite.empty() && !fs::is_regular_file(cfg.train.eval_suite))
      input_error("train.eval_suite", "'" + cfg.train.eval_suite + "' does not exist or is not a file");
  }
  if (options.run_directory) {
    r.dir = inspect_run_directory(cfg, *r.dp);
    r.dp->barrier("run directory check");  // every rank decided before rank 0 writes there
  }

  r.model = load_run_model(cfg, r.device);
  model::Transformer& m = *r.model.model;
  r.lora = cfg.lora.enabled;
  r.params = trainable_parameters(cfg, m, &r.lora_spec);
  for (const auto& [n, p] : r.params) r.param_tensors.push_back(p);
  // After the LoRA checks, so that a bad rank or module is the only message printed.
  if (options.data) {
    r.tokenizer = text::load_tokenizer(cfg.model.path);
    r.chat_template = chat_template_for(cfg.model);
    r.examples = data::tokenize_records(records, *r.tokenizer, *r.chat_template, cfg.data.max_length);
    r.eval_examples = data::tokenize_records(eval_records, *r.tokenizer, *r.chat_template, cfg.data.max_length);
    r.sizes = run_sizes(cfg, static_cast<int64_t>(r.examples.size()));
  }
  // The safety constraint: tokens.json checked against this model, and its reference
  // (a frozen copy, the adapters switched off, or a cache checked against its hashes).
  r.objective = setup_objective(cfg, m, r.tokenizer.get());
  r.optimizer = make_optimizer(cfg, r.params);
  r.schedule = std::make_unique<Schedule>(cfg.schedule, cfg.optim.lr, r.sizes.total_steps);
  return r;
}

}  // namespace safetune::train
