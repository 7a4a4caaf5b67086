// Run directories -> one table of settings against outcomes (see summarize.h).
#include "safetune/eval/summarize.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/eval/svg.h"

namespace safetune::eval {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Keys that differ between runs without being part of the experiment.
bool is_bookkeeping_key(const std::string& k) {
  return k == "train.output_dir" || k == "train.resume" || k == "train.overwrite";
}

void flatten(const YAML::Node& n, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (n.IsMap()) {
    for (const auto& kv : n) {
      const std::string k = kv.first.as<std::string>();
      flatten(kv.second, prefix.empty() ? k : prefix + "." + k, out);
    }
  } else if (n.IsSequence()) {
    std::string s = "[";
    for (size_t i = 0; i < n.size(); ++i) s += (i ? "," : "") + (n[i].IsScalar() ? n[i].Scalar() : std::string("?"));
    out[prefix] = s + "]";
  } else if (n.IsScalar()) {
    out[prefix] = n.Scalar();
  } else {
    out[prefix] = "";
  }
}

json parse_json_file(const std::string& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    input_error(path, std::string("not valid JSON: ") + e.what());
  }
}

// The eval columns of results.json, in the order of its sets.
void add_eval_metrics(const std::string& path, RunRecord& r) {
  const json j = parse_json_file(path);
  if (!j.contains("sets") || !j["sets"].is_array()) input_error(path + ": sets", "expected an array (a results.json of safetune eval)");
  for (const json& s : j["sets"]) {
    const std::string name = s.value("name", "?");
    try {
      if (s.contains("refusal_rate")) {
        r.metrics.emplace_back(name + " refusal", s.at("refusal_rate").get<double>());
        r.metrics.emplace_back(name + " ASR", s.at("attack_success_rate").get<double>());
      } else if (s.contains("accuracy")) {
        r.metrics.emplace_back(name + " acc", s.at("accuracy").get<double>());
      }
    } catch (const json::exception& e) {
      input_error(path + ": sets." + name, std::string("expected numeric rates: ") + e.what());
    }
  }
}

// Final loss terms, wall time and mean tokens/s from metrics.jsonl.
void add_training_metrics(const std::string& path, RunRecord& r) {
  std::istringstream in(read_file(path));
  std::string line;
  json last, last_eval;
  double tps_sum = 0;
  int64_t tps_n = 0, lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      json m = json::parse(line);
      if (m.value("kind", "") == "eval") {  // an evaluation during training
        last_eval = std::move(m);
        continue;
      }
      if (m.contains("tokens_per_s") && m["tokens_per_s"].is_number()) {
        tps_sum += m["tokens_per_s"].get<double>();
        ++tps_n;
      }
      last = std::move(m);
    } catch (const json::exception& e) {
      input_error(path + ":" + std::to_string(lineno), std::string("not a JSON line: ") + e.what());
    }
  }
  if (last.is_null()) input_error(path, "no steps logged");
  if (last.contains("loss") && last["loss"].is_object())
    for (const auto& [k, v] : last["loss"].items()) r.metrics.emplace_back("final " + k, v.is_number() ? v.get<double>() : kNaN);
  r.metrics.emplace_back("train s", last.value("elapsed_s", kNaN));
  r.metrics.emplace_back("tokens/s", tps_n ? tps_sum / tps_n : kNaN);
  // The last evaluation during training: its aggregate metrics (per-set ones have a '/').
  if (last_eval.contains("metrics") && last_eval["metrics"].is_object())
    for (const auto& [k, v] : last_eval["metrics"].items())
      if (k.find('/') == std::string::npos) r.metrics.emplace_back("eval " + k, v.is_number() ? v.get<double>() : kNaN);
}

std::string fmt(double x) {
  if (std::isnan(x)) return "";
  char buf[64];
  const double a = std::fabs(x);
  std::snprintf(buf, sizeof buf, a != 0 && (a >= 1e5 || a < 1e-3) ? "%.3g" : (a >= 100 ? "%.1f" : "%.4f"), x);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

std::vector<EvalPoint> read_eval_records(const std::string& metrics_path) {
  std::istringstream in(read_file(metrics_path));
  std::string line;
  std::vector<EvalPoint> out;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      const json m = json::parse(line);
      if (m.value("kind", "") != "eval") continue;
      EvalPoint p;
      p.step = m.at("step").get<int64_t>();
      for (const auto& [k, v] : m.at("metrics").items()) p.metrics[k] = v.is_number() ? v.get<double>() : kNaN;
      out.push_back(std::move(p));
    } catch (const json::exception& e) {
      input_error(metrics_path + ":" + std::to_string(lineno), std::string("not an evaluation record: ") + e.what());
    }
  }
  return out;
}

RunRecord read_run(const std::string& dir) {
  RunRecord r;
  r.dir = dir;
  const std::string cfg = (fs::path(dir) / "config.resolved.yaml").string();
  if (!path_exists(cfg)) input_error(dir, "not a run directory (no config.resolved.yaml)");
  try {
    flatten(YAML::Load(read_file(cfg)), "", r.config);
  } catch (const YAML::Exception& e) {
    input_error(cfg, std::string("not valid YAML: ") + e.what());
  }
  const std::string results = (fs::path(dir) / "results.json").string();
  if (path_exists(results)) add_eval_metrics(results, r);
  const std::string metrics = (fs::path(dir) / "metrics.jsonl").string();
  if (path_exists(metrics)) add_training_metrics(metrics, r);
  return r;
}

namespace {

std::string config_value(const RunRecord& r, const std::string& key) {
  auto it = r.config.find(key);
  return it == r.config.end() ? "(unset)" : it->second;
}

// Mean and sample standard deviation of the non-NaN values (NaN where undefined).
std::pair<double, double> mean_sd(const std::vector<double>& xs) {
  if (xs.empty()) return {kNaN, kNaN};
  double mean = 0;
  for (double x : xs) mean += x;
  mean /= xs.size();
  if (xs.size() < 2) return {mean, kNaN};
  double ss = 0;
  for (double x : xs) ss += (x - mean) * (x - mean);
  return {mean, std::sqrt(ss / (xs.size() - 1))};
}

// Fills one row from its runs: their dirs, the seeds in the train.seed column, and each
// metric's mean and standard deviation over the runs.
void fill_row(const SummaryTable& t, const std::vector<const RunRecord*>& group, SummaryTable::Row& row) {
  row.runs = static_cast<int>(group.size());
  std::set<std::string> seeds;
  for (const RunRecord* r : group) {
    row.dirs.push_back(r->dir);
    auto it = r->config.find("train.seed");
    if (it != r->config.end()) seeds.insert(it->second);
  }
  for (size_t i = 0; i < t.keys.size(); ++i)
    if (t.keys[i] == "train.seed") {
      std::string s;
      for (const auto& x : seeds) s += (s.empty() ? "" : ",") + x;
      row.key_values[i] = s;
    }
  for (const auto& name : t.metrics) {
    std::vector<double> xs;
    for (const RunRecord* r : group)
      for (const auto& m : r->metrics)
        if (m.first == name && !std::isnan(m.second)) xs.push_back(m.second);
    const auto [mean, sd] = mean_sd(xs);
    row.mean.push_back(mean);
    row.stddev.push_back(sd);
  }
}

}  // namespace

SummaryTable summarize(const std::vector<RunRecord>& runs) {
  SummaryTable t;
  // Varying keys: present with different values (or missing) in some runs.
  std::set<std::string> all_keys;
  for (const auto& r : runs)
    for (const auto& kv : r.config) all_keys.insert(kv.first);
  for (const auto& k : all_keys) {
    if (is_bookkeeping_key(k)) continue;
    std::set<std::string> values;
    for (const auto& r : runs) values.insert(config_value(r, k));
    if (values.size() > 1) t.keys.push_back(k);
  }
  // Metric columns in first-seen order.
  for (const auto& r : runs)
    for (const auto& m : r.metrics)
      if (std::find(t.metrics.begin(), t.metrics.end(), m.first) == t.metrics.end()) t.metrics.push_back(m.first);

  // Rows: runs grouped by their varying keys other than the seed, in first-seen order
  // (a row's key_values hold "" for the seed until fill_row lists the seeds).
  std::vector<std::vector<const RunRecord*>> groups;
  for (const auto& r : runs) {
    std::vector<std::string> kv;
    for (const auto& k : t.keys) kv.push_back(k == "train.seed" ? "" : config_value(r, k));
    size_t g = 0;
    while (g < t.rows.size() && t.rows[g].key_values != kv) ++g;
    if (g == t.rows.size()) {
      t.rows.emplace_back().key_values = kv;
      groups.emplace_back();
    }
    groups[g].push_back(&r);
  }
  for (size_t g = 0; g < t.rows.size(); ++g) fill_row(t, groups[g], t.rows[g]);
  return t;
}

std::string to_markdown(const SummaryTable& t) {
  std::vector<std::string> head = t.keys;
  head.push_back("runs");
  head.insert(head.end(), t.metrics.begin(), t.metrics.end());
  std::string out = "|";
  for (const auto& h : head) out += " " + h + " |";
  out += "\n|";
  for (size_t i = 0; i < head.size(); ++i) out += i < t.keys.size() ? "---|" : "---:|";
  out += "\n";
  for (const auto& row : t.rows) {
    out += "|";
    for (const auto& v : row.key_values) out += " " + v + " |";
    out += " " + std::to_string(row.runs) + " |";
    for (size_t i = 0; i < t.metrics.size(); ++i) {
      std::string cell = fmt(row.mean[i]);
      if (!std::isnan(row.stddev[i])) cell += " ± " + fmt(row.stddev[i]);
      out += " " + cell + " |";
    }
    out += "\n";
  }
  return out;
}

std::string to_csv(const SummaryTable& t) {
  std::string out;
  std::vector<std::string> head = t.keys;
  head.push_back("runs");
  for (const auto& m : t.metrics) {
    head.push_back(m);
    head.push_back(m + " std");
  }
  for (size_t i = 0; i < head.size(); ++i) out += (i ? "," : "") + csv_field(head[i]);
  out += "\n";
  auto num = [](double x) {
    if (std::isnan(x)) return std::string();
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", x);
    return std::string(buf);
  };
  for (const auto& row : t.rows) {
    std::string line;
    for (const auto& v : row.key_values) line += csv_field(v) + ",";
    line += std::to_string(row.runs);
    for (size_t i = 0; i < t.metrics.size(); ++i) line += "," + num(row.mean[i]) + "," + num(row.stddev[i]);
    out += line + "\n";
  }
  return out;
}

std::string to_html(const SummaryTable& t, const std::vector<RunRecord>& runs) {
  using svg::escape;
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  std::string body = "<h1>Sweep summary</h1>\n<p>" + std::to_string(runs.size()) + " runs, " +
                     std::to_string(t.rows.size()) + " settings (seeds averaged: mean ± sd).</p>\n<table>\n<tr>";
  for (const auto& k : t.keys) body += "<th>" + escape(k) + "</th>";
  body += "<th>runs</th>";
  for (const auto& m : t.metrics) body += "<th>" + escape(m) + "</th>";
  body += "</tr>\n";
  for (const auto& row : t.rows) {
    body += "<tr>";
    for (const auto& v : row.key_values) body += "<td>" + escape(v) + "</td>";
    body += "<td>" + std::to_string(row.runs) + "</td>";
    for (size_t i = 0; i < t.metrics.size(); ++i) {
      std::string cell = fmt(row.mean[i]);
      if (!std::isnan(row.stddev[i])) cell += " ± " + fmt(row.stddev[i]);
      body += "<td class=\"num\">" + escape(cell) + "</td>";
    }
    body += "</tr>\n";
  }
  body += "</table>\n";

  auto value = [](const RunRecord& r, const std::string& name) {
    for (const auto& m : r.metrics)
      if (m.first == name) return m.second;
    return kNaN;
  };
  auto label = [&](const RunRecord& r) {
    std::string s;
    for (const auto& k : t.keys) {
      auto it = r.config.find(k);
      const std::string v = it == r.config.end() ? "(unset)" : it->second;
      s += (s.empty() ? "" : " ") + std::string(k == "train.seed" ? "s" : "") + v;
    }
    return s.empty() ? fs::path(r.dir).filename().string() : s;
  };
  for (const auto& asr : t.metrics) {
    if (!ends_with(asr, " ASR")) continue;
    for (const auto& acc : t.metrics) {
      if (!ends_with(acc, " acc")) continue;
      std::vector<svg::Point> pts;
      for (const auto& r : runs) {
        const double x = value(r, asr), y = value(r, acc);
        if (!std::isnan(x) && !std::isnan(y)) pts.push_back({x, y, label(r)});
      }
      body += svg::scatter(acc + " vs " + asr, asr, acc, pts, {640, 400});
    }
  }
  return svg::html_page("safetune sweep summary", body);
}

}  // namespace safetune::eval
