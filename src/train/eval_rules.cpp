// train.keep_best and train.early_stop (see eval_rules.h).
#include "safetune/train/eval_rules.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "safetune/core/error.h"

namespace safetune::train {
namespace {

std::string names_text() {
  std::string s;
  for (const std::string& n : eval_metric_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

void check_metric(const std::string& name, const std::string& where, const std::string& key) {
  const auto& names = eval_metric_names();
  if (std::find(names.begin(), names.end(), name) == names.end())
    input_error(where, key + ": unknown metric '" + name + "'; valid: " + names_text());
}

// A whole string as a finite number.
std::optional<double> number_of(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

const std::vector<std::string>& eval_metric_names() {
  static const std::vector<std::string> names = {"val_ce", "val_total", "val_constraint", "refusal",
                                                 "asr",    "utility",   "margin"};
  return names;
}

bool metric_needs_suite(const std::string& metric) { return metric.rfind("val_", 0) != 0; }

std::optional<BestRule> parse_keep_best(const std::string& text, const std::string& where) {
  if (text.empty()) return std::nullopt;
  const std::string key = "train.keep_best";
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos)
    input_error(where, key + " = '" + text + "': expected METRIC:max or METRIC:min (e.g. refusal:max, refusal+utility:max)");
  BestRule r;
  r.text = text;
  const std::string dir = text.substr(colon + 1);
  if (dir != "max" && dir != "min")
    input_error(where, key + " = '" + text + "': the direction after ':' must be max or min, got '" + dir + "'");
  r.maximize = dir == "max";
  const std::string expr = text.substr(0, colon);
  size_t start = 0;
  while (true) {
    const size_t plus = expr.find('+', start);
    const std::string name = expr.substr(start, plus == std::string::npos ? std::string::npos : plus - start);
    check_metric(name, where, key);
    r.metrics.push_back(name);
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  return r;
}

std::optional<StopRule> parse_early_stop(const std::string& text, const std::string& where) {
  if (text.empty()) return std::nullopt;
  const std::string key = "train.early_stop";
  const size_t op = text.find_first_of("<>");
  if (op == std::string::npos || op == 0)
    input_error(where, key + " = '" + text + "': expected METRIC<BOUND or METRIC>BOUND (e.g. refusal<0.5x: below half "
                                             "its first value; val_ce>4)");
  StopRule r;
  r.text = text;
  r.metric = text.substr(0, op);
  r.below = text[op] == '<';
  check_metric(r.metric, where, key);
  std::string bound = text.substr(op + 1);
  if (!bound.empty() && bound.back() == 'x') {
    r.relative = true;
    bound.pop_back();
  }
  const std::optional<double> v = number_of(bound);
  if (!v) input_error(where, key + " = '" + text + "': the bound must be a number, or a number followed by x (times the "
                                                   "first value), got '" + text.substr(op + 1) + "'");
  r.bound = *v;
  return r;
}

std::optional<double> score_of(const BestRule& rule, const MetricValues& m) {
  double s = 0;
  for (const std::string& name : rule.metrics) {
    auto it = m.find(name);
    if (it == m.end() || !std::isfinite(it->second)) return std::nullopt;
    s += it->second;
  }
  return s;
}

bool is_better(const BestRule& rule, double score, std::optional<double> best) {
  if (!best) return true;
  return rule.maximize ? score > *best : score < *best;  // ties keep the earlier checkpoint
}

double stop_bound(const StopRule& rule, double first_value) {
  return rule.relative ? rule.bound * first_value : rule.bound;
}

bool crosses(const StopRule& rule, const MetricValues& m, double first_value) {
  auto it = m.find(rule.metric);
  if (it == m.end() || !std::isfinite(it->second)) return false;
  const double bound = stop_bound(rule, first_value);
  return rule.below ? it->second < bound : it->second > bound;
}

}  // namespace safetune::train
