// safetune train CONFIG.yaml [key=value ...]: fine-tune (LoRA or full) as the config says.
// Overrides use the config's dotted names (optim.lr=3e-5 lora.target_modules=[q_proj,v_proj]).
// SIGINT / SIGTERM stop after the current step with a checkpoint; the printed command
// resumes the run.
#include <cstdio>

#include "command.h"
#include "config_args.h"
#include "safetune/core/error.h"
#include "safetune/eval/training_eval.h"
#include "safetune/train/config.h"
#include "safetune/train/trainer.h"

namespace {

struct Opts : safetune::cli::ConfigArgs {
  bool list_keys = false;
};

// Quotes a word for a POSIX shell when it needs it.
std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") ==
                        std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string resume_command(const Opts& o) {
  std::string cmd = "safetune train " + shell_quote(o.config);
  for (const std::string& kv : o.overrides) {
    const std::string key = kv.substr(0, kv.find('='));
    if (key == "train.resume" || key == "train.overwrite" || key == "resume" || key == "overwrite") continue;
    cmd += " " + shell_quote(kv);
  }
  return cmd + " train.resume=auto";
}

safetune::cli::Command cmd("train", "fine-tune a model from a YAML config (+ key=value overrides)", [](CLI::App& sub) {
  auto o = std::make_shared<Opts>();
  safetune::cli::add_config_args(sub, *o, "YAML run config (see configs/)");
  sub.add_flag("--list-keys", o->list_keys, "print every config key with its type, default and meaning");
  sub.footer(
      "Examples:\n"
      "  safetune train configs/tiny.yaml model.path=tiny data.train=train.jsonl train.output_dir=runs/a\n"
      "  safetune train configs/llama3-8b.yaml optim.lr=1e-4 train.resume=auto\n"
      "One process per run directory: a second one started on it exits with code 2, naming the\n"
      "holder's pid (rank 0 holds the lock of a data-parallel run).\n"
      "Exit codes: 0 done or stopped cleanly (Ctrl-C / SIGTERM save a checkpoint), 2 bad input,\n"
      "3 non-finite loss, 4 the environment failed (disk full, I/O error, a lost peer rank): no\n"
      "partial checkpoint is left, `latest` names the last good one, train.resume=auto continues.");
  return [o]() -> int {
    using namespace safetune;
    if (o->list_keys) {
      std::fputs(train::config_reference().c_str(), stdout);
      return 0;
    }
    const train::RunConfig cfg = cli::load_config_args(
        *o, "train", "give a config file: safetune train CONFIG.yaml [key=value ...]", "optim.lr=3e-5");
    train::TrainOptions opts;
    opts.resume_command = resume_command(*o);
    // Read before the run starts: a bad suite fails before anything is loaded.
    if (cfg.train.eval_every > 0 && !cfg.train.eval_suite.empty()) opts.suite = eval::suite_evaluation(cfg.train);
    train::TrainResult r = train::run_training(cfg, opts);
    return r.exit_code;
  };
});

}  // namespace
