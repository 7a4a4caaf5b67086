// The suite's part of an evaluation during training (see training_eval.h).
#include "safetune/eval/training_eval.h"

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>

#include "safetune/core/error.h"
#include "safetune/eval/evaluate.h"
#include "safetune/eval/judge.h"
#include "safetune/eval/margin.h"
#include "safetune/eval/suite.h"

namespace safetune::eval {
namespace {

// Slots: per set, one per prompt (refused, or answered correctly: 0 or 1), and for a
// safety set with a margin one more per prompt (its margin).
class SuiteDuringTraining : public train::SuiteEvaluation {
 public:
  SuiteDuringTraining(Suite suite, const train::TrainConfig& t)
      : suite_(std::move(suite)),
        batch_size_(t.eval_batch_size),
        max_new_tokens_(t.eval_max_new_tokens),
        refusal_start_(t.eval_refusal_start),
        compliance_start_(t.eval_compliance_start) {
    for (const PromptSet& set : suite_.sets) {
      offsets_.push_back(slots_);
      slots_ += set.records.size() * (set.kind == SetKind::kSafety && margins() ? 2 : 1);
    }
  }

  bool margins() const { return !refusal_start_.empty() && !compliance_start_.empty(); }
  bool has(SetKind k, bool utility) const {
    for (const PromptSet& set : suite_.sets)
      if (utility ? set.kind != SetKind::kSafety : set.kind == k) return true;
    return false;
  }

  size_t num_slots() const override { return slots_; }

  std::vector<double> measure(const train::EvalModel& m, const train::EvalShare& share,
                              const train::EvalProgress& progress) override {
    at::NoGradGuard no_grad;
    std::vector<double> slots(slots_, 0.0);
    const Responder responder =
        make_responder(*m.model, *m.tokenizer, *m.chat_template, m.eos_ids, m.pad_id, m.max_position);
    const BatchOwner owns = [share](int64_t b) { return share.owns(b); };
    for (size_t s = 0; s < suite_.sets.size(); ++s) {
      const PromptSet& set = suite_.sets[s];
      // As run_eval: the set's own answer length, else the evaluation's.
      GenerationSettings g;
      g.batch_size = batch_size_;
      g.max_new_tokens = set.max_new_tokens > 0 ? set.max_new_tokens : max_new_tokens_;
      std::vector<std::vector<text::Message>> prompts;
      std::vector<std::string> where;
      for (const auto& rec : set.records) {
        prompts.push_back(rec.prompt);
        where.push_back(rec.where);
      }
      const auto answers = respond_share(responder, prompts, where, g, owns, [&](int64_t done, int64_t total) {
        if (progress) progress("generate " + set.name, done, total);
      });
      double* row = slots.data() + offsets_[s];
      const size_t n = set.records.size();
      for (size_t i = 0; i < n; ++i) {
        if (!answers[i]) continue;
        row[i] = set.kind == SetKind::kSafety ? is_refusal(*answers[i], suite_.refusal_keywords)
                                              : answer_correct(set, i, *answers[i]);
      }
      if (set.kind == SetKind::kSafety && margins()) {
        std::vector<std::string> texts;
        for (const auto& rec : set.records) texts.push_back(prompt_text(rec));
        const std::vector<double> mg = first_token_margins(*m.model, *m.tokenizer, *m.chat_template, texts,
                                                           refusal_start_, compliance_start_, batch_size_, owns);
        for (size_t i = 0; i < n; ++i)
          if (!std::isnan(mg[i])) row[n + i] = mg[i];
      }
    }
    return slots;
  }

  train::MetricValues metrics(const std::vector<double>& slots) const override {
    train::MetricValues out;
    double refused = 0, margin = 0, correct = 0;
    size_t n_safety = 0, n_utility = 0;
    for (size_t s = 0; s < suite_.sets.size(); ++s) {
      const PromptSet& set = suite_.sets[s];
      const double* row = slots.data() + offsets_[s];
      const size_t n = set.records.size();
      // Counts summed in item order, as score_set counts them.
      double hits = 0;
      for (size_t i = 0; i < n; ++i) hits += row[i];
      if (set.kind == SetKind::kSafety) {
        out["refusal/" + set.name] = hits / static_cast<double>(n);
        out["asr/" + set.name] = (static_cast<double>(n) - hits) / static_cast<double>(n);
        refused += hits;
        n_safety += n;
        if (margins()) {
          double sum = 0;  // in item order, as a mean over the set's margins is taken
          for (size_t i = 0; i < n; ++i) sum += row[n + i];
          out["margin/" + set.name] = sum / static_cast<double>(n);
          margin += sum;
        }
      } else {
        out["accuracy/" + set.name] = hits / static_cast<double>(n);
        correct += hits;
        n_utility += n;
      }
    }
    if (n_safety > 0) {
      out["refusal"] = refused / static_cast<double>(n_safety);
      out["asr"] = (static_cast<double>(n_safety) - refused) / static_cast<double>(n_safety);
      if (margins()) out["margin"] = margin / static_cast<double>(n_safety);
    }
    if (n_utility > 0) out["utility"] = correct / static_cast<double>(n_utility);
    return out;
  }

 private:
  Suite suite_;
  int64_t batch_size_, max_new_tokens_;
  std::string refusal_start_, compliance_start_;
  std::vector<size_t> offsets_;
  size_t slots_ = 0;
};

}  // namespace

std::shared_ptr<train::SuiteEvaluation> suite_evaluation(const train::TrainConfig& t) {
  if (!std::filesystem::is_regular_file(t.eval_suite))
    input_error("train.eval_suite", "'" + t.eval_suite + "' does not exist or is not a file");
  auto e = std::make_shared<SuiteDuringTraining>(load_suite(t.eval_suite), t);
  // The rules' metrics must come out of this suite.
  std::vector<std::pair<std::string, std::string>> wanted;  // key, metric
  if (auto best = train::parse_keep_best(t.keep_best, "train.keep_best"))
    for (const std::string& m : best->metrics) wanted.emplace_back("train.keep_best", m);
  if (auto stop = train::parse_early_stop(t.early_stop, "train.early_stop"))
    wanted.emplace_back("train.early_stop", stop->metric);
  for (const auto& [key, m] : wanted) {
    const bool safety = m == "refusal" || m == "asr" || m == "margin";
    if (safety && !e->has(SetKind::kSafety, false))
      input_error(key, "metric '" + m + "' needs a safety set in " + t.eval_suite + " (\"kind\": \"safety\")");
    if (m == "utility" && !e->has(SetKind::kSafety, true))
      input_error(key, "metric 'utility' needs a utility set in " + t.eval_suite + " (exact_match, regex or final_number)");
  }
  return e;
}

}  // namespace safetune::eval
