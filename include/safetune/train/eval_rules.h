// What a run does with its evaluations' numbers: keep the best checkpoint
// (train.keep_best) and stop early (train.early_stop). Parsed from the config's text
// here, without LibTorch (config.cpp validates with it, and the fuzz build compiles it).
//
// Metrics by name (each evaluation record's "metrics" object):
//   val_ce, val_total      held-out cross-entropy and objective (data.eval)
//   val_constraint         held-out constraint term, unweighted (data.eval, a constraint)
//   refusal, asr           share of the suite's safety prompts refused / not refused
//   utility                share of the suite's utility prompts answered correctly
//   margin                 mean first-token refusal margin over the safety prompts (nats)
// Per set, the record also holds refusal/<set>, asr/<set>, margin/<set>, accuracy/<set>.
//
//   keep_best:  "refusal:max", "val_ce:min", "refusal+utility:max" (the sum of the metrics)
//   early_stop: "refusal<0.5x" (below half its first value), "val_ce>4" (above 4)
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace safetune::train {

// The metric names keep_best and early_stop accept, in the order above.
const std::vector<std::string>& eval_metric_names();
// Whether `metric` comes from the suite (generation) rather than from data.eval.
bool metric_needs_suite(const std::string& metric);

struct BestRule {
  std::vector<std::string> metrics;  // the score is their sum
  bool maximize = true;
  std::string text;                  // as configured, for messages
};

struct StopRule {
  std::string metric;
  bool below = true;       // stop when the metric < bound (else > bound)
  double bound = 0;
  bool relative = false;   // bound x the metric's first evaluated value
  std::string text;
};

// "" = off. InputError naming `where` and what is expected.
std::optional<BestRule> parse_keep_best(const std::string& text, const std::string& where);
std::optional<StopRule> parse_early_stop(const std::string& text, const std::string& where);

using MetricValues = std::map<std::string, double>;

// What keep_best and early_stop remember between evaluations; saved in every checkpoint's
// trainer_state.json (checkpoint.h), so that a resumed run decides exactly as an uninterrupted one.
struct EvalState {
  MetricValues first;               // each metric's first evaluated value
  std::optional<double> best_score;  // train.keep_best's score of run_dir/best
  int64_t best_step = -1;
  bool stopped = false;             // train.early_stop ended the run
  std::string stop_reason;
};

// The rule's score of an evaluation's metrics; nullopt when one is missing or not finite.
std::optional<double> score_of(const BestRule& rule, const MetricValues& m);
// Whether `score` beats `best` (nullopt: nothing kept yet).
bool is_better(const BestRule& rule, double score, std::optional<double> best);

// The bound in the metric's units, given its first evaluated value.
double stop_bound(const StopRule& rule, double first_value);
// Whether the metrics cross the rule's bound; nullopt-valued metrics never do.
bool crosses(const StopRule& rule, const MetricValues& m, double first_value);

}  // namespace safetune::train
