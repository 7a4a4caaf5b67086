// `safetune summarize RUN_DIR...`: one row per experimental setting, read back from the
// run directories a sweep leaves behind.
//
// Each run directory holds config.resolved.yaml (what was trained), metrics.jsonl (one
// line per optimizer step) and results.json (what `safetune eval` measured). The table's
// columns are the config keys whose values differ between the runs, then one column per
// eval metric (<set> refusal / <set> ASR for safety sets, <set> acc for utility sets), the
// final value of each loss term, the training wall time, the mean tokens/s, and the last
// evaluation during training's metrics ("eval refusal", "eval val_ce", ...). Runs that
// differ only in train.seed (and in their output directory) are one row: mean and sample
// standard deviation over the seeds, with the count in the "runs" column.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace safetune::eval {

struct RunRecord {
  std::string dir;
  std::map<std::string, std::string> config;  // flattened dotted keys -> scalar text
  std::vector<std::pair<std::string, double>> metrics;  // column -> value, in column order
};

// One evaluation during training (metrics.jsonl's {"kind": "eval"} records): its step
// and metrics by name (train/eval_rules.h; null -> NaN).
struct EvalPoint {
  int64_t step = 0;
  std::map<std::string, double> metrics;
};

// The evaluation records of a metrics.jsonl, in file order (e.g. to draw refusal against
// the step with svg::line_chart). InputError naming the file and line for a bad record.
std::vector<EvalPoint> read_eval_records(const std::string& metrics_path);

// Reads one run directory; a missing or malformed file is an InputError naming it.
// results.json is optional (a run not evaluated yet has no eval columns).
RunRecord read_run(const std::string& dir);

struct SummaryTable {
  std::vector<std::string> keys;     // varying config keys (row labels)
  std::vector<std::string> metrics;  // metric columns, in a stable order
  struct Row {
    std::vector<std::string> key_values;
    int runs = 0;
    std::vector<double> mean, stddev;  // per metric; NaN where no run has it; stddev NaN for 1 run
    std::vector<std::string> dirs;
  };
  std::vector<Row> rows;
};

SummaryTable summarize(const std::vector<RunRecord>& runs);

std::string to_markdown(const SummaryTable& t);
std::string to_csv(const SummaryTable& t);

// A self-contained HTML report: the table, then for each safety set x utility set a
// scatter of utility against attack success rate with one point per run, labelled with
// its varying keys (a good method sits top left).
std::string to_html(const SummaryTable& t, const std::vector<RunRecord>& runs);

}  // namespace safetune::eval
