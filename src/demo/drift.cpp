// The demo's drift curve (see drift.h).
#include "safetune/demo/drift.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "safetune/core/fs.h"
#include "safetune/eval/summarize.h"
#include "safetune/eval/svg.h"

namespace safetune::demo {
namespace {

using json = nlohmann::json;
namespace svg = eval::svg;

bool contains(const json& list, const std::string& name) {
  return std::any_of(list.begin(), list.end(), [&](const json& v) { return v.get<std::string>() == name; });
}

// A row's method and regime from its name ("many:pact" -> {"many", "pact"}).
std::pair<std::string, std::string> regime_and_method(const std::string& row) {
  const size_t colon = row.find(':');
  if (colon == std::string::npos) return {"", row};
  return {row.substr(0, colon), row.substr(colon + 1)};
}

// One chart: `metric` over steps, a colour per method, each seed thin and the mean over
// seeds (at the steps every seed has) bold.
std::string chart(const json& results, const std::string& regime, const std::string& metric, const std::string& title) {
  std::vector<svg::Series> series;
  int color = 0;
  for (const auto& m : results["settings"]["drift"]["methods"]) {
    const std::string method = m;
    std::map<double, std::vector<double>> by_step;
    std::vector<svg::Series> seeds;
    for (const auto& w : results["worlds"])
      for (const auto& row : w["methods"]) {
        if (!row.contains("drift") || row["drift"].is_null()) continue;
        if (regime_and_method(row["method"]) != std::make_pair(regime, method)) continue;
        svg::Series s{method + " seed " + std::to_string(w["seed"].get<int64_t>()), {}, color, 0.7, false};
        const json& d = row["drift"];
        for (size_t i = 0; i < d["step"].size(); ++i) {
          const double x = d["step"][i].get<double>(), y = d[metric][i].is_number() ? d[metric][i].get<double>() : NAN;
          s.points.push_back({x, y});
          by_step[x].push_back(y);
        }
        seeds.push_back(std::move(s));
      }
    if (seeds.empty()) continue;
    svg::Series mean{method, {}, color, 2.6, true};
    for (const auto& [x, ys] : by_step) {
      if (ys.size() != seeds.size()) continue;
      double sum = 0;
      for (double y : ys) sum += y;
      mean.points.push_back({x, sum / static_cast<double>(ys.size())});
    }
    for (auto& s : seeds) series.push_back(std::move(s));
    series.push_back(std::move(mean));
    ++color;
  }
  if (series.empty()) return "";
  return svg::line_chart(title, "optimizer step", metric == "refusal" ? "refusal of harmful requests" : "task accuracy",
                         series, {}, 0.0, 1.0);
}

}  // namespace

bool drift_watched(const json& settings, const std::string& regime, const std::string& method) {
  if (!settings.contains("drift")) return false;
  const json& d = settings["drift"];
  return contains(d["methods"], method) && (regime.empty() || contains(d["regimes"], regime));
}

void watch_drift(train::RunConfig& cfg, const json& settings) {
  const int64_t points = settings["drift"]["points"];
  const int64_t per_epoch = (cfg.data.num_examples + cfg.train.batch_size - 1) / cfg.train.batch_size;
  const int64_t steps = per_epoch * cfg.train.epochs;
  cfg.train.eval_every = std::max<int64_t>(1, steps / std::max<int64_t>(1, points - 1));
  cfg.train.eval_batch_size = settings["eval"]["batch_size"];
}

void write_drift_suite(const std::string& path, const std::string& data_dir, const json& settings) {
  const json& e = settings["eval"];
  const std::string task = settings["world"].value("version", "v2") == "v3" ? "task_val" : "sentiment_val";
  const auto in_data = [&](const std::string& name) { return (std::filesystem::path(data_dir) / name).string(); };
  const json sets = json::array(
      {{{"name", "harmful_val"}, {"path", in_data("harmful_val.jsonl")}, {"kind", "safety"},
        {"max_new_tokens", e["safety_max_new_tokens"]}},
       {{"name", task}, {"path", in_data(task + ".jsonl")}, {"kind", "exact_match"}, {"label", "label"},
        {"max_new_tokens", e["label_max_new_tokens"]}}});
  write_file_atomic(path, json{{"sets", sets}}.dump(2) + "\n");
}

json drift_curve(const std::string& metrics_path) {
  if (!std::filesystem::exists(metrics_path)) return nullptr;
  const std::vector<eval::EvalPoint> points = eval::read_eval_records(metrics_path);
  if (points.empty()) return nullptr;
  json out = {{"step", json::array()}, {"refusal", json::array()}, {"utility", json::array()}};
  for (const auto& p : points) {
    out["step"].push_back(p.step);
    for (const char* m : {"refusal", "utility"}) {
      const auto it = p.metrics.find(m);
      out[m].push_back(it == p.metrics.end() || !std::isfinite(it->second) ? json(nullptr) : json(it->second));
    }
  }
  return out;
}

std::string drift_html(const json& results) {
  const json& st = results["settings"];
  if (!st.contains("drift")) return "";
  const json regimes = st.contains("regimes") ? st["drift"]["regimes"] : json::array({""});
  std::string charts;
  for (const auto& r : regimes) {
    const std::string regime = r;
    const std::string where = regime.empty() ? "" : " (" + regime + " refusal phrasings)";
    charts += chart(results, regime, "refusal", "Refusal while fine-tuning" + where);
    charts += chart(results, regime, "utility", "Task accuracy while fine-tuning" + where);
  }
  if (charts.empty()) return "";
  return "<h2>Drift while fine-tuning</h2>\n<p class=\"note\">Each watched run is evaluated on the validation sets "
         "(harmful requests: refusal; task inputs: accuracy) at step 0 and every train.eval_every steps, as "
         "<code>safetune train</code> does with train.eval_suite. Thin lines are single seeds, the bold line their "
         "mean. Plain fine-tuning's line shows how fast refusals go without a constraint; a constraint that "
         "holds keeps its refusal line high while its task line rises.</p>\n" +
         charts;
}

}  // namespace safetune::demo
