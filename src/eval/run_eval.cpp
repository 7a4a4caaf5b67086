// A whole evaluation (see run_eval.h).
#include "safetune/eval/run_eval.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <filesystem>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/eval/judge.h"
#include "safetune/model/load.h"
#include "safetune/model/transformer.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"

namespace safetune::eval {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The judge's prompt template: the default, or the file's (with both placeholders).
std::string judge_template(const JudgeOptions& j) {
  std::string t = j.template_path.empty() ? default_judge_template() : read_file(j.template_path);
  fill_judge_template(t, "", "", j.template_path.empty() ? "judge template" : j.template_path);
  return t;
}

// Model judge: one verdict per item of each safety set (greedy: a verdict should not
// depend on a seed). Fills unsafe[s] and answers[s] for the safety sets.
void run_judge(const Suite& suite, const std::vector<std::vector<std::string>>& responses, const EvalOptions& o,
               const c10::Device& device, const EvalHooks& hooks, std::vector<std::vector<bool>>& unsafe,
               std::vector<std::vector<std::string>>& answers) {
  torch::NoGradGuard no_grad;
  const std::string tmpl_text = judge_template(o.judge);
  auto judge = model::load_model(o.judge.model, device);
  auto jtok = text::load_tokenizer(o.judge.model);
  const text::ChatTemplate jtmpl = text::resolve_chat_template("auto", o.judge.model);
  const auto jr = make_responder(*judge.model, *jtok, jtmpl, judge.config.eos_token_ids, judge.config.pad_token_id,
                                 judge.config.max_position_embeddings);
  GenerationSettings jg;
  jg.max_new_tokens = o.judge.max_new_tokens;
  jg.batch_size = o.generation.batch_size;
  for (size_t s = 0; s < suite.sets.size(); ++s) {
    const auto& set = suite.sets[s];
    if (set.kind != SetKind::kSafety) continue;
    std::vector<std::vector<text::Message>> prompts;
    std::vector<std::string> where;
    for (size_t i = 0; i < set.records.size(); ++i) {
      prompts.push_back({{"user", fill_judge_template(tmpl_text, prompt_text(set.records[i]), responses[s][i],
                                                      "judge template")}});
      where.push_back(set.records[i].where + " (judge prompt)");
    }
    answers[s] = respond(jr, prompts, where, jg, [&](int64_t d, int64_t t) {
      if (hooks.progress) hooks.progress("judge " + set.name, d, t);
    });
    for (const auto& a : answers[s]) unsafe[s].push_back(judge_says_unsafe(a));
  }
}

// Adds the members of `extras` to `scored`; an "items" array's objects to its items.
void add_extras(json& scored, const json& extras) {
  for (const auto& [key, value] : extras.items()) {
    if (key != "items") {
      scored[key] = value;
      continue;
    }
    for (size_t i = 0; i < value.size() && i < scored["items"].size(); ++i) scored["items"][i].update(value[i]);
  }
}

json settings_json(const Responder& r, const Suite& suite, const EvalOptions& o) {
  const GenerationSettings& g = o.generation;
  json settings = {{"chat_template", r.tmpl->name()},
                   {"judge", o.judge.kind},
                   {"max_new_tokens", g.max_new_tokens},
                   {"batch_size", g.batch_size},
                   {"decoding", g.temperature > 0 ? "sampled" : "greedy"},
                   {"temperature", g.temperature},
                   {"top_p", g.top_p},
                   {"seed", g.seed},
                   {"refusal_keywords", suite.refusal_keywords},
                   {"refusal_match", "case-insensitive substring"}};
  if (o.judge.kind == "model") {
    settings["judge_model"] = o.judge.model;
    settings["judge_template"] = judge_template(o.judge);
    settings["judge_max_new_tokens"] = o.judge.max_new_tokens;
  }
  return settings;
}

}  // namespace

void check_eval_options(const EvalOptions& o) {
  const GenerationSettings& g = o.generation;
  if (g.max_new_tokens < 1) input_error("--max-new-tokens", "must be >= 1");
  if (g.batch_size < 1) input_error("--batch-size", "must be >= 1");
  if (o.judge.max_new_tokens < 1) input_error("--judge-max-new-tokens", "must be >= 1");
  if (g.temperature < 0) input_error("--temperature", "must be >= 0");
  if (!(g.top_p > 0 && g.top_p <= 1)) input_error("--top-p", "must be in (0, 1]");
  const JudgeOptions& j = o.judge;
  if (j.kind != "keyword" && j.kind != "model") input_error("--judge", "expected keyword or model, got '" + j.kind + "'");
  if (j.kind == "keyword") {
    if (!j.model.empty() || !j.template_path.empty())
      input_error("--judge-model", "a judge model is used only with --judge model");
    return;
  }
  // The judge must be a chat model: the verdict prompt is a user turn.
  if (j.model.empty()) input_error("--judge", "--judge model needs --judge-model DIR");
  if (!fs::is_directory(j.model)) input_error(j.model, "judge model directory not found");
  if (!has_chat_template(j.model))
    input_error(j.model, "the judge model has no chat template (tokenizer_config.json chat_template or "
                         "chat_template.jinja); a judge must be a chat model");
  judge_template(j);
}

json run_eval(const Responder& responder, const Suite& suite, const EvalOptions& options, const EvalHooks& hooks) {
  check_eval_options(options);
  const c10::Device device = responder.model->device();
  json settings = settings_json(responder, suite, options);
  std::vector<std::vector<std::string>> responses;
  {
    torch::NoGradGuard no_grad;
    for (const auto& set : suite.sets) {
      GenerationSettings g = options.generation;
      if (set.max_new_tokens > 0) g.max_new_tokens = set.max_new_tokens;
      responses.push_back(respond(responder, set, g, [&](int64_t d, int64_t t) {
        if (hooks.progress) hooks.progress("generate " + set.name, d, t);
      }));
    }
  }
  std::vector<std::vector<bool>> unsafe(suite.sets.size());
  std::vector<std::vector<std::string>> judge_answers(suite.sets.size());
  std::vector<json> extras(suite.sets.size(), json::object());
  if (hooks.set_extras)
    for (size_t s = 0; s < suite.sets.size(); ++s) extras[s] = hooks.set_extras(suite.sets[s], responses[s]);
  if (hooks.answers_done) hooks.answers_done();
  if (options.judge.kind == "model") run_judge(suite, responses, options, device, hooks, unsafe, judge_answers);
  json sets = json::array();
  for (size_t s = 0; s < suite.sets.size(); ++s) {
    json scored = score_set(suite.sets[s], responses[s], suite.refusal_keywords, unsafe[s], judge_answers[s]);
    add_extras(scored, extras[s]);
    sets.push_back(std::move(scored));
  }
  return {{"settings", settings}, {"sets", sets}};
}

}  // namespace safetune::eval
