// metrics.jsonl: one JSON object per logged optimizer step, and one per evaluation
// ({"kind": "eval", ...}; train/evaluation.h), appended and flushed line by line so that a
// killed run keeps everything it logged.
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "safetune/loss/constraint_choices.h"

namespace safetune::train {

// One optimizer step's loss terms: each the mean over its micro-batches weighted by their
// shares of the trained tokens, summed over the ranks. The terms the total is made of are
// the task loss (ce), the constraint's value (unweighted; none: absent) and the
// constraint's own detached terms (its descriptor's metric_terms, e.g. pact's gate);
// total = ce + lambda x constraint.
struct StepLoss {
  // What this rank knows: nothing before its first micro-batch; the total alone when it
  // ran none while other ranks did (their sum brings no names); every term otherwise.
  enum class Known { nothing, total, all };
  Known known = Known::nothing;
  loss::ConstraintKind kind = loss::ConstraintKind::none;  // names the constraint's term
  double ce = 0;
  double constraint = 0;
  std::vector<double> parts;  // descriptor_of(kind).metric_terms, in that order
  double total = 0;

  // The terms the total is made of, by their logged names: "ce", the constraint's kind
  // ("pact", ...), then its parts ("gate", ...). Empty unless every term is known.
  std::vector<std::pair<std::string, double>> terms() const;
  // The values as one flat array, as the ranks sum them: the total first (alone when
  // only it is known), then ce, the constraint and the parts (compute_objective's terms,
  // in its order). Empty when nothing is known.
  std::vector<double> flat() const;
  // The terms of a `kind` objective from such an array; its size says what is known.
  static StepLoss from_flat(loss::ConstraintKind kind, const std::vector<double>& flat);
};

struct StepMetrics {
  int64_t step = 0;
  int64_t epoch = 0;
  StepLoss loss;  // logged under "loss": its terms by name and "total"
  double lr = 0, grad_norm = 0;
  int64_t tokens = 0;        // tokens processed so far
  double tokens_per_s = 0;   // over the steps since the previous record
  double elapsed_s = 0;
  // Peak memory so far in MiB: CUDA caching allocator's peak allocation on a GPU, the
  // process's peak RSS on CPU; < 0 = unknown (written as null).
  double peak_mem_mb = -1;
};

std::string metrics_json(const StepMetrics& m);

// An evaluation during training, after `step` optimizer steps (0: before the first).
struct EvalMetrics {
  int64_t step = 0;
  int64_t epoch = 0;
  std::map<std::string, double> metrics;  // by name (train/eval_rules.h); not finite -> null
  double eval_s = 0;                      // the evaluation's wall time
};

// {"kind": "eval", "step", "epoch", "metrics": {...}, "eval_s"}.
std::string eval_metrics_json(const EvalMetrics& m);

class MetricsLog {
 public:
  // Opens `path` for appending. With keep_up_to_step >= 0, records of later steps (logged
  // after the checkpoint a run resumes from) are dropped first; < 0 truncates the file.
  MetricsLog(const std::string& path, int64_t keep_up_to_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  // EnvironmentError when the line cannot be written (a full disk): the run stops, as a
  // failed checkpoint write stops it, rather than go on with holes in its record.
  void write(const StepMetrics& m);
  void write(const EvalMetrics& m);

 private:
  void write_line(const std::string& line);
  std::string path_;
  std::FILE* f_ = nullptr;
};

}  // namespace safetune::train
