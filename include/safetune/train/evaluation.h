// Evaluation during training (train.eval_every): at step 0, every eval_every optimizer
// steps and at the last step, the model being trained is measured on
//   - data.eval, the held-out records: validation loss, the training objective's terms
//     (val_ce, val_constraint, val_gate, val_total), without gradients or dropout;
//   - train.eval_suite, the suite of `safetune eval`: refusal, attack success, utility and
//     the first-token refusal margin, from greedy answers generated in batches.
// One record per evaluation goes into metrics.jsonl ({"kind": "eval", "step", "epoch",
// "metrics": {...}, "eval_s"}); train.keep_best and train.early_stop act on it
// (eval_rules.h), and what they remember is checkpointed with the trainer's state.
//
// The suite's part generates text and judges it, which is the eval module's work; eval
// comes after train in the module order, so the trainer sees it only through the
// SuiteEvaluation interface below, implemented in eval/training_eval.h and handed to the
// trainer by its caller (TrainOptions::suite; the CLI makes it from the config).
//
// Data parallel: every process evaluates its share, batch b of a set (or of the held-out
// examples) on rank b mod WORLD_SIZE, each batch exactly as one process would form it.
// Each item's numbers go into its own slot of a vector that is summed over the ranks, so
// every rank holds every item's numbers unchanged (x + 0 = x) and derives the same metrics
// as a single process; rank 0 writes the record.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "safetune/data/batch.h"
#include "safetune/train/eval_rules.h"

namespace safetune::model {
class Transformer;
}
namespace safetune::text {
class Tokenizer;
class ChatTemplate;
}  // namespace safetune::text

namespace safetune::train {

struct Run;

// The model under training, as an evaluation sees it (borrowed; in train mode, evaluated
// without gradients, so without dropout).
struct EvalModel {
  model::Transformer* model = nullptr;
  const text::Tokenizer* tokenizer = nullptr;
  const text::ChatTemplate* chat_template = nullptr;
  std::vector<int64_t> eos_ids;   // the model config's
  std::optional<int64_t> pad_id;  // the model config's
  int64_t max_position = 0;
};

// This process's share of an evaluation: the batches b with b mod world == rank.
struct EvalShare {
  int rank = 0;
  int world = 1;
  bool owns(int64_t batch) const { return batch % world == rank; }
};

// (what is running, e.g. "generate advbench", done, total) after each batch.
using EvalProgress = std::function<void(const std::string& what, int64_t done, int64_t total)>;

// The suite's part of an evaluation (implemented in eval/training_eval.h).
class SuiteEvaluation {
 public:
  virtual ~SuiteEvaluation() = default;
  // The length of measure()'s vector: one slot per number per item.
  virtual size_t num_slots() const = 0;
  // This process's items measured, the other processes' slots left 0.
  virtual std::vector<double> measure(const EvalModel& m, const EvalShare& share, const EvalProgress& progress) = 0;
  // The metrics (refusal, asr, utility, margin and per set) from every process's slots summed.
  virtual MetricValues metrics(const std::vector<double>& slots) const = 0;
};

// Everything the loop needs to evaluate, set up once before the first step.
struct Evaluation {
  int64_t every = 0;                      // train.eval_every; 0 = never
  std::vector<data::Batch> held_out;      // data.eval's examples, in file order, on the device
  std::vector<std::string> term_names;    // the objective's terms: "ce", [constraint, "gate"]
  std::shared_ptr<SuiteEvaluation> suite;  // train.eval_suite's; null without one
  std::optional<BestRule> keep_best;
  std::optional<StopRule> early_stop;
};

// InputError when the config asks for a suite that `suite` does not provide.
Evaluation setup_evaluation(const Run& r, std::shared_ptr<SuiteEvaluation> suite);

// Whether the state after `step` optimizer steps (0 = before the first) is evaluated.
bool evaluation_due(const Evaluation& e, int64_t step, int64_t total_steps);

// The metrics of the model as it is now, the same on every rank.
MetricValues evaluate_now(Run& r, const Evaluation& e, const EvalProgress& progress);

// "val_ce 2.31  refusal 87.5%  utility 40.0%  margin 3.12": the headline numbers.
std::string headline(const MetricValues& m);

}  // namespace safetune::train
