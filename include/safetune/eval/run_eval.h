// A whole evaluation, as `safetune eval` runs it: every prompt of a suite answered by one
// model, the safety sets judged (refusal keywords, or a judge model), every set scored,
// gathered into the results JSON. The caller loads the model under test (and its adapter,
// tokenizer and chat template) and writes the file; anything else that evaluates an
// already-loaded model on a suite (the demo) can call it the same way.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "safetune/eval/evaluate.h"
#include "safetune/eval/suite.h"

namespace safetune::eval {

struct JudgeOptions {
  std::string kind = "keyword";  // keyword | model
  std::string model;             // kind = model: a chat model directory
  std::string template_path;     // kind = model: the judge prompt ({prompt}, {response}); "" = the default
  int64_t max_new_tokens = 16;   // tokens the judge may answer with (greedy)
};

struct EvalOptions {
  GenerationSettings generation;
  JudgeOptions judge;
};

// Checks the options without running a model (a judge model's directory and chat
// template, its prompt template). InputErrors name `safetune eval`'s flags.
void check_eval_options(const EvalOptions& o);

// Optional hooks of run_eval.
struct EvalHooks {
  // After each batch: what is running ("generate <set>", "judge <set>"), done, total.
  std::function<void(const std::string& what, int64_t done, int64_t total)> progress;
  // Once every answer is generated, before a judge model loads: where the caller may free
  // the model under test.
  std::function<void()> answers_done;
  // Extra per-set numbers, computed while the model under test is still there (before
  // answers_done) from each set and its answers: an object whose members are added to the
  // set's scored object; an "items" array in it adds its objects' members to the items,
  // one by one (e.g. the demo's first-token margins: {"margin": mean, "items": [{"margin":
  // m_i}, ...]}).
  std::function<nlohmann::json(const PromptSet& set, const std::vector<std::string>& answers)> set_extras;
};

// Evaluates the responder's model on `suite`. Returns {"settings": {...}, "sets": [...]}:
// the settings of the generation, the judge and the suite's refusal keywords (the caller
// adds what it knows: model, adapter, suite path), and score_set's object per set. The
// judge model, if any, runs on the device of the model under test.
nlohmann::json run_eval(const Responder& responder, const Suite& suite, const EvalOptions& options,
                        const EvalHooks& hooks = {});

}  // namespace safetune::eval
