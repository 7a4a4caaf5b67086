// The demo over seeds (see pipeline.h): one child process per world, several at once,
// then the summary, results.json and report.html.
#include "safetune/demo/pipeline.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/process.h"
#include "safetune/core/threads.h"
#include "safetune/demo/report.h"
#include "safetune/demo/settings.h"
#include "safetune/demo/summary.h"

namespace safetune::demo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string world_file(const DemoOptions& o, uint64_t seed) {
  return (fs::path(o.out) / "worlds" / ("seed-" + std::to_string(seed) + (o.curves ? "-curves" : "") + ".json"))
      .string();
}

}  // namespace

json run_demo(const DemoOptions& o, const std::vector<std::string>& self) {
  const auto t_start = std::chrono::steady_clock::now();
  // Settings first: a bad override fails before any work starts.
  json settings = default_settings(o.quick);
  for (const auto& kv : o.overrides) apply_settings_override(settings, kv);
  default_methods(settings);
  ensure_output_dir(o.out);

  const int n_seeds = o.seeds > 0 ? o.seeds : (o.quick ? 1 : 8);
  const int threads = o.threads > 0 ? o.threads : available_cores();
  const int jobs = o.jobs > 0 ? o.jobs : std::max(1, available_cores() / threads);
  std::vector<uint64_t> seeds;
  std::vector<std::vector<std::string>> commands;
  for (int i = 0; i < n_seeds; ++i) {
    seeds.push_back(o.first_seed + static_cast<uint64_t>(i));
    std::vector<std::string> c = self;
    c.push_back("--world");
    c.push_back(std::to_string(seeds.back()));
    commands.push_back(c);
  }
  std::fprintf(stderr, "demo: %d world(s), %d at a time, %d thread(s) each%s\n", n_seeds, jobs, threads,
               o.curves ? ", with the lambda curves" : "");
  const std::vector<int> status = run_processes(commands, jobs);
  std::vector<json> worlds;
  for (size_t i = 0; i < seeds.size(); ++i) {
    if (status[i] != 0)
      throw std::runtime_error("demo: the world of seed " + std::to_string(seeds[i]) + " failed (exit " +
                               std::to_string(status[i]) + "); its log is above");
    worlds.push_back(json::parse(read_file(world_file(o, seeds[i]))));
  }

  json methods = summarize_methods(worlds);
  const std::string pact = settings["report"]["pact"], plain = settings["report"]["plain"];
  bool all_cached = true;
  for (const auto& w : worlds) all_cached = all_cached && w["all_cached"].get<bool>();
  json results = {{"settings", settings},
                  {"quick", o.quick},
                  {"curves", o.curves},
                  {"seeds", seeds},
                  {"threads", threads},
                  {"jobs", jobs},
                  {"methods", methods},
                  {"claims", check_claims(methods, pact, plain)},
                  {"pareto_front", pareto_front(methods)},
                  {"worlds", worlds},
                  {"all_cached", all_cached}};
  if (o.curves) results["lambda_choice"] = choose_lambdas(methods, settings, plain);
  results["total_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  const std::string name = o.curves ? "curves" : "results";
  write_file_atomic((fs::path(o.out) / (name + ".json")).string(),
                    results.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
  write_file_atomic((fs::path(o.out) / (o.curves ? "curves.html" : "report.html")).string(), render_report(results));
  return results;
}

}  // namespace safetune::demo
