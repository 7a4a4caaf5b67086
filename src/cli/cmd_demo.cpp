// safetune demo: the whole method end to end on an embedded toy setup (see
// safetune/demo/pipeline.h): synthetic data, tokenizer, probe, aligned model, safety
// tokens, fine-tuning under each constraint, evaluation, results.json and report.html.
// Finished stages are cached under OUT/stages, so a rerun only redoes what changed.
#include <cstdio>

#include "command.h"
#include "model_cli.h"
#include "safetune/demo/pipeline.h"
#include "safetune/demo/report.h"

namespace {

int run(const safetune::demo::DemoOptions& o) {
  using namespace safetune;
  cli::keep_freed_memory();
  const nlohmann::json results = demo::run_demo(o);
  std::printf("\n%s\n", demo::results_table(results).c_str());
  for (const auto& c : demo::check_claims(results))
    std::printf("%s %s (measured %s)\n", c["pass"].get<bool>() ? "[reproduced]    " : "[not reproduced]",
                c["claim"].get<std::string>().c_str(), c["value"].get<std::string>().c_str());
  std::printf("\n%s in %.1fs; wrote %s/results.json and %s/report.html\n",
              results["all_cached"].get<bool>() ? "all stages cached" : "done",
              results["total_seconds"].get<double>(), o.out.c_str(), o.out.c_str());
  return 0;
}

safetune::cli::Command cmd("demo", "the whole method end to end on an embedded toy setup (CPU, minutes)",
                           [](CLI::App& sub) {
                             auto o = std::make_shared<safetune::demo::DemoOptions>();
                             sub.add_option("--out", o->out, "output directory (stages, results.json, report.html)")
                                 ->capture_default_str();
                             sub.add_flag("--quick", o->quick, "smaller data and fewer steps (for CI)");
                             sub.add_option("--seed", o->seed, "data and weight seed")->capture_default_str();
                             sub.add_option("--threads", o->threads, "compute threads (0 = every core)")
                                 ->capture_default_str();
                             return [o]() { return run(*o); };
                           });

}  // namespace
