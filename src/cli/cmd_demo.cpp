// safetune demo: the whole method end to end on an embedded toy setup, over several
// seeds (see safetune/demo/pipeline.h). Each seed's world runs in a child process (this
// command with --run-seed N); finished stages are cached under OUT/stages, so a rerun only
// redoes what changed.
#include <cstdio>

#include "safetune/core/log.h"

#include "command.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/memory.h"
#include "safetune/demo/pipeline.h"
#include "safetune/demo/report.h"

namespace {

struct Options {
  safetune::demo::DemoOptions demo;
  int64_t run_seed = -1;  // set in the child processes
};

int run(const Options& o) {
  using namespace safetune;
  keep_freed_memory_for_reuse();
  if (o.demo.world != "v2" && o.demo.world != "v3")
    input_error("--world", "unknown world '" + o.demo.world + "' (expected v2 or v3)");
  if (o.run_seed >= 0) {
    log::set_level(log::Level::warn);  // the stage lines are the progress
    demo::run_one_world(o.demo, static_cast<uint64_t>(o.run_seed));
    return 0;
  }
  // The children run this same command with --run-seed N.
  std::vector<std::string> self = {executable_dir() + "/safetune", "demo", "--out", o.demo.out, "--threads",
                                   std::to_string(o.demo.threads), "--world", o.demo.world};
  if (o.demo.quick) self.push_back("--quick");
  if (o.demo.curves) self.push_back("--curves");
  for (const auto& kv : o.demo.overrides) self.push_back(kv);
  const nlohmann::json results = demo::run_demo(o.demo, self);
  std::printf("\n%s\n", demo::results_table(results).c_str());
  for (const auto& c : results["claims"])
    std::printf("%s %s (measured %s)\n", c["pass"].get<bool>() ? "[reproduced]    " : "[not reproduced]",
                c["claim"].get<std::string>().c_str(), c["value"].get<std::string>().c_str());
  const char* name = o.demo.curves ? "curves" : "results";
  std::printf("\n%s in %.1fs; wrote %s/%s.json and %s/%s.html\n",
              results["all_cached"].get<bool>() ? "all stages cached" : "done", results["total_seconds"].get<double>(),
              o.demo.out.c_str(), name, o.demo.out.c_str(), o.demo.curves ? "curves" : "report");
  return 0;
}

safetune::cli::Command cmd(
    "demo", "the whole method end to end on an embedded toy setup, over several seeds (CPU, minutes)",
    [](CLI::App& sub) {
      auto o = std::make_shared<Options>();
      auto& d = o->demo;
      sub.add_option("--out", d.out, "output directory (stages, worlds, results.json, report.html)")
          ->capture_default_str();
      sub.add_flag("--quick", d.quick, "a smaller world, one seed, fewer methods (for CI)");
      sub.add_flag("--curves", d.curves,
                   "also run pact, kl_full and anchor over lambda and pact's variants (curves.json, curves.html); "
                   "reuses the default run's cached stages");
      sub.add_option("--seeds", d.seeds, "how many seeds (worlds); 0 = 8 (--quick: 1)")->capture_default_str();
      sub.add_option("--first-seed", d.first_seed, "the first seed; the others follow it")->capture_default_str();
      sub.add_option("--threads", d.threads, "compute threads per world (0 = every core)")->capture_default_str();
      sub.add_option("--jobs", d.jobs, "worlds run at once (0 = cores / threads)")->capture_default_str();
      sub.add_option("--world", d.world,
                     "which toy world: v3 (the default: a task new to the chat model, two refusal regimes, a stress "
                     "world) or v2 (the earlier sentiment world, reproducible)")
          ->capture_default_str();
      sub.add_option("--run-seed", o->run_seed, "run one seed's world only (what the parent starts)")->group("");
      sub.add_option("overrides", d.overrides,
                     "settings as key=value, e.g. finetune.optim.lr=1e-3 methods.pact.objective.lambda=2 "
                     "(sections: world, model, probe, aligned, tokens, finetune, methods.<name>, eval)");
      sub.footer(
          "Each seed is a whole world (data, tokenizer, probe, chat model, safety tokens, fine-tuning with each "
          "method, evaluation). results.json holds every method's mean, sample sd and per-seed values on the "
          "test sets and the validation sets; settings chosen by looking at results were chosen on validation "
          "(results.json: settings.choices).");
      return [o]() { return run(*o); };
    });

}  // namespace
