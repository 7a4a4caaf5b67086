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
#include "safetune/demo/targets.h"
#include "safetune/demo/world_v3.h"

namespace safetune::demo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string world_file(const DemoOptions& o, uint64_t seed) {
  return (fs::path(o.out) / "worlds" /
          (o.world + "-seed-" + std::to_string(seed) + (o.curves ? "-curves" : "") + ".json"))
      .string();
}

// v3: per refusal regime, the world's targets, each named method's and the stress
// world's, and the Pareto front; the claims are all of them, each tagged with its regime.
// v3: the reference's mean mass on S at each kind of row, per regime, over seeds.
json reference_mass_over_seeds(const std::vector<json>& worlds, const std::string& regime) {
  json out = json::object();
  for (const char* rows : {"refusal_rows", "answer_rows", "attack_rows"}) {
    json per_seed = json::array();
    double sum = 0;
    for (const auto& w : worlds) {
      const double m = w["regimes"][regime]["reference_mass"][rows]["mean_mass_on_s"];
      per_seed.push_back(m);
      sum += m;
    }
    out[rows] = {{"mean", worlds.empty() ? 0.0 : sum / static_cast<double>(worlds.size())}, {"per_seed", per_seed}};
  }
  return out;
}

void add_regime_targets(json& results, const json& settings, const json& methods, const std::vector<json>& worlds) {
  const std::string plain = settings["report"]["plain"];
  const double chance = 1.0 / static_cast<double>(topic_code_names().size());
  json by_regime = json::object(), claims = json::array();
  for (const auto& r : settings["regimes"]) {
    const std::string regime = r;
    const json rows = regime_methods(methods, regime), stress = stress_methods(methods, regime);
    json c = check_world_targets(rows, plain, chance);
    for (const auto& m : settings["report"]["targets_of"])
      for (const auto& x : check_method_targets(rows, m, plain)) c.push_back(x);
    for (const auto& x : check_stress_targets(rows, stress, plain)) c.push_back(x);
    by_regime[regime] = {{"claims", c}, {"pareto_front", pareto_front(rows)},
                         {"reference_mass_on_s", reference_mass_over_seeds(worlds, regime)}};
    for (auto x : c) {
      x["claim"] = "[" + regime + "] " + x["claim"].get<std::string>();
      claims.push_back(x);
    }
  }
  results["regimes"] = by_regime;
  results["claims"] = claims;
  json fronts = json::object();
  for (const auto& [regime, v] : by_regime.items()) fronts[regime] = v["pareto_front"];
  results["pareto_front"] = fronts;
}

}  // namespace

json run_demo(const DemoOptions& o, const std::vector<std::string>& self) {
  const auto t_start = std::chrono::steady_clock::now();
  // Settings first: a bad override fails before any work starts.
  json settings = default_settings(o.quick, o.world);
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
    c.push_back("--run-seed");
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
  if (settings.contains("regimes")) {
    add_regime_targets(results, settings, methods, worlds);
    if (o.curves) {
      json choice = json::object();
      for (const auto& r : settings["regimes"])
        choice[r.get<std::string>()] = choose_lambdas(regime_methods(methods, r), settings, plain);
      choice["both"] = choose_lambdas_over_regimes(choice, settings);
      results["lambda_choice"] = choice;
    }
  } else if (o.curves) {
    results["lambda_choice"] = choose_lambdas(methods, settings, plain);
  }
  results["total_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  const std::string name = o.curves ? "curves" : "results";
  write_file_atomic((fs::path(o.out) / (name + ".json")).string(),
                    results.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
  write_file_atomic((fs::path(o.out) / (o.curves ? "curves.html" : "report.html")).string(), render_report(results));
  return results;
}

}  // namespace safetune::demo
