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

namespace safetune::train {

struct StepMetrics {
  int64_t step = 0;
  int64_t epoch = 0;
  std::vector<std::pair<std::string, double>> loss;  // loss terms: "ce", ..., "total"
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
