// Evaluation during training (see evaluation.h).
#include "safetune/train/evaluation.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>

#include "safetune/core/error.h"
#include "safetune/model/transformer.h"
#include "safetune/text/tokenizer.h"
#include "safetune/train/objective.h"
#include "safetune/train/setup.h"

namespace safetune::train {
namespace {

// Every rank's slots summed into every rank's vector. Each slot is written by one rank
// only, so the sum is that rank's number, unchanged.
void sum_over_ranks(const Run& r, std::vector<double>& slots) {
  if (!r.dp->active() || slots.empty()) return;
  at::Tensor t = at::tensor(slots, at::kDouble);
  if (r.device.is_cuda()) t = t.to(r.device);  // NCCL reduces device tensors
  r.dp->all_reduce_sum({t});
  t = t.to(at::kCPU).contiguous();
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), slots.begin());
}

// Per held-out batch b, its objective terms then "total", then its trained tokens: slots
// b x (terms + 2) onwards.
std::vector<double> validation_slots(Run& r, const Evaluation& e, const EvalShare& share) {
  const size_t width = e.term_names.size() + 2;
  std::vector<double> slots(e.held_out.size() * width, 0.0);
  model::Transformer& m = *r.model.model;
  for (size_t b = 0; b < e.held_out.size(); ++b) {
    if (!share.owns(static_cast<int64_t>(b))) continue;
    const data::Batch& batch = e.held_out[b];
    const int64_t n = trained_tokens(batch);
    if (n == 0) continue;
    const LossTerms lt = compute_objective(r.objective, m, batch);
    if (lt.terms.size() != e.term_names.size())
      throw std::logic_error("validation: the objective gave " + std::to_string(lt.terms.size()) + " terms, expected " +
                             std::to_string(e.term_names.size()));
    double* row = slots.data() + b * width;
    for (size_t k = 0; k < lt.terms.size(); ++k) row[k] = lt.terms[k].second.item<double>();
    row[width - 2] = lt.total.item<double>();
    row[width - 1] = static_cast<double>(n);
  }
  return slots;
}

// The held-out means, each batch weighted by its trained tokens (as a training step
// weights its micro-batches), summed in batch order on every rank alike.
void add_validation_metrics(const Evaluation& e, const std::vector<double>& slots, MetricValues& m) {
  const size_t width = e.term_names.size() + 2;
  std::vector<double> sums(width - 1, 0.0);
  double tokens = 0;
  for (size_t b = 0; b < e.held_out.size(); ++b) {
    const double* row = slots.data() + b * width;
    for (size_t k = 0; k + 1 < width; ++k) sums[k] += row[width - 1] * row[k];
    tokens += row[width - 1];
  }
  if (tokens == 0) return;
  for (size_t k = 0; k < e.term_names.size(); ++k) m["val_" + e.term_names[k]] = sums[k] / tokens;
  m["val_total"] = sums.back() / tokens;
}

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100 * x);
  return buf;
}

}  // namespace

Evaluation setup_evaluation(const Run& r, std::shared_ptr<SuiteEvaluation> suite) {
  const TrainConfig& t = r.cfg.train;
  Evaluation e;
  e.every = t.eval_every;
  if (e.every <= 0) return e;
  if (!t.eval_suite.empty() && !suite)
    input_error("train.eval_suite", "this caller evaluates no suite (safetune train does); unset train.eval_suite");
  e.suite = std::move(suite);
  e.keep_best = parse_keep_best(t.keep_best, "train.keep_best");
  e.early_stop = parse_early_stop(t.early_stop, "train.early_stop");
  // The objective's terms, as compute_objective gives them ("ce", the constraint, then the
  // constraint's own terms its descriptor names: pact's gate, safety_mass's four), the
  // constraint under one name whatever it is.
  e.term_names = {"ce"};
  const loss::ConstraintKind kind = r.objective.spec.kind;
  if (kind != loss::ConstraintKind::none) {
    e.term_names.push_back("constraint");
    for (const std::string& name : loss::descriptor_of(kind).metric_terms) e.term_names.push_back(name);
  }
  // In file order, never shuffled: every evaluation sees the same batches.
  if (!r.eval_examples.empty()) {
    const data::Batcher batcher(r.eval_examples, t.eval_batch_size, 0, /*shuffle=*/false, false,
                                data::pad_id_for(*r.tokenizer));
    for (int64_t b = 0; b < batcher.steps_per_epoch(); ++b) e.held_out.push_back(data::to_device(batcher.batch(0, b), r.device));
  }
  return e;
}

bool evaluation_due(const Evaluation& e, int64_t step, int64_t total_steps) {
  return e.every > 0 && (step % e.every == 0 || step == total_steps);
}

MetricValues evaluate_now(Run& r, const Evaluation& e, const EvalProgress& progress) {
  at::NoGradGuard no_grad;  // also what turns LoRA dropout off
  const EvalShare share{r.dp->rank(), r.dp->world_size()};
  MetricValues m;
  if (!e.held_out.empty()) {
    std::vector<double> slots = validation_slots(r, e, share);
    sum_over_ranks(r, slots);
    add_validation_metrics(e, slots, m);
  }
  if (e.suite) {
    EvalModel em;
    em.model = r.model.model.get();
    em.tokenizer = r.tokenizer.get();
    em.chat_template = &*r.chat_template;
    em.eos_ids = r.model.config.eos_token_ids;
    em.pad_id = r.model.config.pad_token_id;
    em.max_position = r.model.config.max_position_embeddings;
    std::vector<double> slots = e.suite->measure(em, share, progress);
    if (slots.size() != e.suite->num_slots()) throw std::logic_error("suite evaluation: wrong number of slots");
    sum_over_ranks(r, slots);
    for (const auto& [k, v] : e.suite->metrics(slots)) m[k] = v;
  }
  return m;
}

std::string headline(const MetricValues& m) {
  std::string s;
  auto add = [&](const std::string& text) { s += (s.empty() ? "" : "  ") + text; };
  char buf[64];
  for (const char* k : {"val_ce", "val_constraint"})
    if (auto it = m.find(k); it != m.end()) {
      std::snprintf(buf, sizeof buf, "%s %.4f", k, it->second);
      add(buf);
    }
  for (const char* k : {"refusal", "utility"})
    if (auto it = m.find(k); it != m.end()) add(std::string(k) + " " + percent(it->second));
  if (auto it = m.find("margin"); it != m.end()) {
    std::snprintf(buf, sizeof buf, "margin %.3f", it->second);
    add(buf);
  }
  return s;
}

}  // namespace safetune::train
