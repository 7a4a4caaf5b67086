// The demo's settings (see settings.h).
#include "safetune/demo/settings.h"

#include <cstdio>

#include "safetune/core/error.h"
#include "safetune/demo/synthetic_data.h"

namespace safetune::demo {
namespace {

using json = nlohmann::json;

// Settings chosen by looking at results, all on the validation sets (seeds 1-4; the
// lambdas confirmed by `--curves` over 8 seeds), never on the test sets:
//  - finetune.optim.lr: the smallest of {3e-4, 1e-3, 3e-3} at which plain fine-tuning
//    ("none") reaches its best validation sentiment accuracy;
//  - tokens.topk: of {24, 28, 32}, the largest validation refusal minus over-refusal of
//    pact at lambda 1;
//  - each constraint's lambda: `safetune demo --curves` over {0.5, 1, 2, 4} with a rule
//    fixed in advance (summary.h, choose_lambdas): the largest validation refusal minus
//    over-refusal plus utility.
constexpr double kFinetuneLr = 1e-3;
constexpr int64_t kTopk = 28;
constexpr double kPactLambda = 1.0;
constexpr double kKlFullLambda = 4.0;
constexpr double kAnchorLambda = 4.0;

json lambda_choice(double value) {
  return {{"value", value},
          {"on", "validation"},
          {"by", "safetune demo --curves over lambda in {0.5, 1, 2, 4}: the largest mean validation refusal of "
                 "harmful requests minus refusal of benign ones plus sentiment accuracy"}};
}

json section_of(const json& s, const std::string& name) {
  if (!s.contains(name)) input_error("override", "unknown settings section '" + name + "'");
  return s[name];
}

bool is_train_section(const std::string& name) { return name == "probe" || name == "aligned" || name == "finetune"; }

}  // namespace

json default_settings_v2(bool quick) {
  json s;
  s["world"] = sizes_to_json(DataSizes{});
  s["world"]["vocab"] = 1000;
  s["model"] = {{"hidden", 128}, {"layers", 3}, {"heads", 4}, {"intermediate", 384}};
  // The toy models are trained from random weights: full fine-tuning, a cosine schedule.
  const json full = {{"lora.enabled", false}, {"model.dtype", "fp32"}, {"data.max_length", 96},
                     {"optim.weight_decay", 0.0}, {"optim.grad_clip", 1.0}, {"schedule.type", "cosine"},
                     {"schedule.warmup_steps", 10}, {"train.batch_size", 16}};
  s["probe"] = full;
  s["probe"].update({{"optim.lr", 3e-3}, {"train.epochs", 4}});
  s["aligned"] = full;
  s["aligned"].update({{"optim.lr", 2e-3}, {"train.epochs", 4}});
  s["tokens"] = {{"topk", kTopk}, {"max_resp_len", 32}};
  // PACT's reference set-up; the learning rate is the toy scale's (see departures).
  s["finetune"] = {{"lora.enabled", true},
                   {"lora.r", 8},
                   {"lora.alpha", 32},
                   {"lora.dropout", 0.05},
                   {"lora.target_modules", {"q_proj", "v_proj"}},
                   {"model.dtype", "fp32"},
                   {"data.max_length", 96},
                   {"data.harmful_fraction", 0.1},
                   {"optim.lr", kFinetuneLr},
                   {"optim.weight_decay", 0.0},
                   {"optim.grad_clip", 1.0},
                   {"schedule.type", "step_lr"},
                   {"schedule.gamma", 0.85},
                   {"train.epochs", 3},
                   {"train.batch_size", 16},
                   {"objective.reference", "adapter_off"},
                   {"objective.temperature", 2.0},
                   {"objective.gate.enabled", true}};
  s["methods"] = {
      {"none", {{"objective.constraint", "none"}}},
      {"kl_full", {{"objective.constraint", "kl_full"}, {"objective.lambda", kKlFullLambda}}},
      {"anchor", {{"objective.constraint", "anchor"}, {"objective.lambda", kAnchorLambda}}},
      {"pact", {{"objective.constraint", "pact"}, {"objective.lambda", kPactLambda}}},
      {"pact_lambda_1", {{"objective.constraint", "pact"}, {"objective.lambda", 1.0}}},
      {"pact_gate_off",
       {{"objective.constraint", "pact"}, {"objective.lambda", kPactLambda}, {"objective.reference_mix", "full"}}},
      {"pact_target_reference",
       {{"objective.constraint", "pact"}, {"objective.lambda", kPactLambda}, {"objective.target", "reference"}}},
      {"pact_probe_positions",
       {{"objective.constraint", "pact"}, {"objective.lambda", kPactLambda}, {"objective.positions", "probe"}}}};
  s["run"] = {"none", "kl_full", "anchor", "pact", "pact_gate_off"};
  // pact at the reference's lambda 1 too, when validation chose another.
  if (kPactLambda != 1.0) s["run"].push_back("pact_lambda_1");
  s["curves"] = {{"lambdas", {0.5, 1.0, 2.0, 4.0}},
                 {"of", {"pact", "kl_full", "anchor"}},
                 {"also", {"pact_target_reference", "pact_probe_positions"}}};
  s["eval"] = {{"safety_max_new_tokens", 12}, {"label_max_new_tokens", 4}, {"batch_size", 48}};
  s["choices"] = {{"finetune.optim.lr",
                   {{"value", kFinetuneLr},
                    {"on", "validation"},
                    {"by", "the smallest of {3e-4, 1e-3, 3e-3} at which plain fine-tuning reaches its best validation "
                           "sentiment accuracy"}}},
                  {"tokens.topk",
                   {{"value", kTopk},
                    {"on", "validation"},
                    {"by", "of {24, 28, 32}, the largest validation refusal minus over-refusal of pact at lambda 1"}}},
                  {"methods.pact.objective.lambda", lambda_choice(kPactLambda)},
                  {"methods.kl_full.objective.lambda", lambda_choice(kKlFullLambda)},
                  {"methods.anchor.objective.lambda", lambda_choice(kAnchorLambda)}};
  s["departures"] = json::array(
      {{{"setting", "finetune.optim.lr"},
        {"reference", 3e-5},
        {"here", s["finetune"]["optim.lr"]},
        {"why", "a ~1M-parameter model moves far less per step than an 8B one: at 3e-4 plain fine-tuning "
                "still kept 80% of refusals and reached 71% accuracy (validation, seeds 1-2); chosen on validation "
                "(choices)"}},
       {{"setting", "finetune.train.batch_size"},
        {"reference", "8 per GPU x 2 GPUs"},
        {"here", 16},
        {"why", "the same global batch on one process"}},
       {{"setting", "finetune.model.dtype"}, {"reference", "bf16"}, {"here", "fp32"}, {"why", "CPU"}},
       {{"setting", "world"},
        {"reference", "5,000 examples of SST-2 / AG News / GSM8K with a share of harmful ones; Llama-3.1-8B"},
        {"here", "600 examples of a synthetic sentiment task with 10% harmful; a toy Llama"},
        {"why", "a CPU in minutes"}},
       {{"setting", "tokens.topk"},
        {"reference", 50},
        {"here", kTopk},
        {"why", "a 1,000-token vocabulary and ~24 refusal tokens: 50 would add ~25 tokens the chat model barely "
                "predicts on refusals (task answers, end of turn), each then pushed down at every position"}},
       {{"setting", "world.align_comply_percent"},
        {"reference", "a real chat model"},
        {"here", 5},
        {"why", "a toy chat model trained only on refusals is certain of them (first-token margin ~10 nats) and "
                "puts no probability on compliance; a real one keeps some, which puts its affirmative start in S"}}});
  s["report"] = {{"pact", "pact"}, {"plain", "none"}};
  if (quick) {
    s["world"].update({{"pretrain_howto", 800}, {"pretrain_other", 200}, {"pretrain_sentiment", 400},
                       {"align_howto", 450},   {"align_other", 150},    {"align_sentiment", 100}, {"refusals", 64},
                       {"finetune_sentiment", 270}, {"finetune_harmful", 100}, {"test", 120},
                       {"validation", 60},     {"vocab", 700}});
    s["model"] = {{"hidden", 96}, {"layers", 2}, {"heads", 4}, {"intermediate", 256}};
    s["run"] = {"none", "kl_full", "pact"};
  }
  return s;
}

json default_settings(bool quick, const std::string& world) {
  if (world == "v2") {
    json s = default_settings_v2(quick);
    s["world"]["version"] = "v2";
    return s;
  }
  if (world == "v3") return default_settings_v3(default_settings_v2(quick), quick);
  input_error("--world", "unknown world '" + world + "' (expected v2 or v3)");
}

void apply_settings_override(json& s, const std::string& kv) {
  const std::string where = "override '" + kv + "'";
  const size_t eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) input_error(where, "expected key=value (e.g. finetune.optim.lr=1e-3)");
  const std::string key = kv.substr(0, eq), text = kv.substr(eq + 1);
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;
  const size_t dot = key.find('.');
  const std::string section = key.substr(0, dot);
  section_of(s, section);
  if (dot == std::string::npos) {
    if (s[section].is_object()) input_error(where, "'" + section + "' is a section: set one of its keys");
    if (s[section].type() != value.type()) input_error(where, "expected a value like " + s[section].dump());
    s[section] = value;
    return;
  }
  const std::string rest = key.substr(dot + 1);
  if (key == "world.version") input_error(where, "the world is chosen with --world v2|v3");
  if (is_train_section(section)) {
    s[section][rest] = value;  // a train-config key: checked when the run's config is built
    return;
  }
  if (section == "methods") {
    const size_t d2 = rest.find('.');
    if (d2 == std::string::npos) input_error(where, "expected methods.<name>.<train-config key>=value");
    s["methods"][rest.substr(0, d2)][rest.substr(d2 + 1)] = value;
    return;
  }
  if (!s[section].is_object() || !s[section].contains(rest))
    input_error(where, "unknown key '" + rest + "' in settings section '" + section + "'");
  json& slot = s[section][rest];
  const bool both_numbers = slot.is_number() && value.is_number();
  if (!both_numbers && slot.type() != value.type()) input_error(where, "expected a value like " + slot.dump());
  slot = value;
}

std::vector<std::string> train_overrides(const json& section) {
  std::vector<std::string> out;
  for (const auto& [k, v] : section.items()) {
    std::string text;
    if (v.is_string()) text = v.get<std::string>();
    else if (v.is_array()) {
      text = "[";
      for (size_t i = 0; i < v.size(); ++i) text += (i ? ", " : "") + (v[i].is_string() ? v[i].get<std::string>() : v[i].dump());
      text += "]";
    } else text = v.dump();
    out.push_back(k + "=" + text);
  }
  return out;
}

std::vector<std::string> default_methods(const json& settings) {
  std::vector<std::string> out;
  for (const auto& m : settings["run"]) {
    const std::string name = m.get<std::string>();
    if (!settings["methods"].contains(name)) input_error("settings.run", "no method named '" + name + "'");
    out.push_back(name);
  }
  return out;
}

json curve_methods(const json& settings) {
  json out = json::object();
  for (const auto& fam : settings["curves"]["of"]) {
    const std::string f = fam.get<std::string>();
    for (const auto& l : settings["curves"]["lambdas"]) {
      char name[64];
      std::snprintf(name, sizeof name, "%s@%g", f.c_str(), l.get<double>());
      json m = settings["methods"][f];
      m["objective.lambda"] = l;
      out[name] = m;
    }
  }
  for (const auto& a : settings["curves"]["also"]) out[a.get<std::string>()] = settings["methods"][a.get<std::string>()];
  return out;
}

}  // namespace safetune::demo
