// RunConfig: YAML parsing, key=value overrides, error messages (unknown keys with a
// suggestion, wrong types with file:line, out-of-range values), the resolved YAML round
// trip, and the example configs shipped in configs/.
#include <gtest/gtest.h>

#include <filesystem>

#include "safetune/core/error.h"
#include "safetune/train/config.h"

using namespace safetune;
using namespace safetune::train;

namespace {

// The smallest valid file: the three required fields.
const std::string kBase = R"(model:
  path: models/tiny
data:
  train: data/train.jsonl
train:
  output_dir: runs/t
)";

std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_run_config(yaml, "run.yaml", overrides);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

}  // namespace

// Defaults are the reference PACT training setup.
TEST(Config, DefaultsAreTheReferenceSetup) {
  const RunConfig c = parse_run_config(kBase, "run.yaml");
  EXPECT_EQ(c.model.path, "models/tiny");
  EXPECT_TRUE(c.lora.enabled);
  EXPECT_EQ(c.lora.r, 8);
  EXPECT_EQ(c.lora.alpha, 32);
  EXPECT_EQ(c.lora.dropout, 0.05);
  EXPECT_EQ(c.lora.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(c.optim.lr, 3e-5);
  EXPECT_EQ(c.optim.weight_decay, 0.0);
  EXPECT_EQ(c.optim.grad_clip, 1.0);
  EXPECT_EQ(c.schedule.type, ScheduleType::step_lr);
  EXPECT_EQ(c.schedule.gamma, 0.85);
  EXPECT_EQ(c.train.epochs, 3);
  EXPECT_EQ(c.train.batch_size, 8);
  EXPECT_EQ(c.train.seed, 42);
  EXPECT_EQ(c.data.max_length, 512);
  EXPECT_EQ(c.objective.lambda, 1.0);
  EXPECT_EQ(c.objective.temperature, 2.0);
  EXPECT_EQ(c.objective.gate.alpha, 2.0);
  EXPECT_EQ(c.objective.gate.b, 0.0);
  EXPECT_EQ(c.objective.gate.top_p, 0.9);
  EXPECT_EQ(c.objective.gate.temperature, 1.0);
  EXPECT_EQ(c.objective.gate.prefix_n, 8);
  EXPECT_EQ(c.objective.gate.prefix_tau, 8.0);
}

TEST(Config, ParsesEveryKindOfValue) {
  const RunConfig c = parse_run_config(R"(model:
  path: m
train:
  output_dir: o
lora:
  enabled: false
  r: 16
  alpha: 8.5
  target_modules: [q_proj, k_proj, down_proj]
optim:
  lr: 1e-4
  weight_decay: 0.01
schedule: {type: cosine, warmup_steps: 20}
objective:
  constraint: pact
  tokens: tokens.json
  reference: copy
  gate:
    alpha: 3
    top_p: 0.95
    enabled: false
data:
  train: d.jsonl
  eval:            # empty = none
  harmful_fraction: 0.1
  harmful: "data/harm ful.jsonl"
)",
                                       "run.yaml");
  EXPECT_FALSE(c.lora.enabled);
  EXPECT_EQ(c.lora.r, 16);
  EXPECT_EQ(c.lora.alpha, 8.5);
  EXPECT_EQ(c.lora.target_modules, (std::vector<std::string>{"q_proj", "k_proj", "down_proj"}));
  EXPECT_EQ(c.optim.lr, 1e-4);
  EXPECT_EQ(c.optim.weight_decay, 0.01);
  EXPECT_EQ(c.schedule.type, ScheduleType::cosine);
  EXPECT_EQ(c.schedule.warmup_steps, 20);
  EXPECT_EQ(c.objective.constraint, loss::ConstraintKind::pact);
  EXPECT_EQ(c.objective.gate.alpha, 3.0);
  EXPECT_EQ(c.objective.gate.top_p, 0.95);
  EXPECT_FALSE(c.objective.gate.enabled);
  EXPECT_EQ(c.data.eval, "");
  EXPECT_EQ(c.data.harmful, "data/harm ful.jsonl");
  EXPECT_EQ(c.data.harmful_fraction, 0.1);
}

TEST(Config, OverridesUseTheSameDottedNames) {
  const RunConfig c = parse_run_config(kBase + "optim:\n  lr: 1e-4\n", "run.yaml",
                                       {"optim.lr=3e-5", "lora.target_modules=[q_proj,v_proj,o_proj]",
                                        "objective.constraint=pact", "objective.tokens=runs/tok ens.json",
                                        "train.activation_checkpointing=true", "objective.gate.prefix_n=4",
                                        " train.batch_size = 2 ", "lora.target_modules=[q_proj,v_proj,o_proj]",
                                        "model.chat_template={{ messages }}", "data.eval=\"quoted: yes\""});
  EXPECT_EQ(c.optim.lr, 3e-5);  // the override wins over the file
  EXPECT_EQ(c.lora.target_modules, (std::vector<std::string>{"q_proj", "v_proj", "o_proj"}));
  EXPECT_EQ(c.objective.constraint, loss::ConstraintKind::pact);
  EXPECT_EQ(c.objective.tokens, "runs/tok ens.json");
  EXPECT_TRUE(c.train.activation_checkpointing);
  EXPECT_EQ(c.objective.gate.prefix_n, 4);
  EXPECT_EQ(c.train.batch_size, 2);
  EXPECT_EQ(c.model.chat_template, "{{ messages }}");  // strings are taken verbatim
  EXPECT_EQ(c.data.eval, "quoted: yes");               // unless quoted

  // A single module name is a one-element list.
  EXPECT_EQ(parse_run_config(kBase, "run.yaml", {"lora.target_modules=o_proj"}).lora.target_modules,
            (std::vector<std::string>{"o_proj"}));
  // Overrides can also supply the required fields of an otherwise empty file.
  const RunConfig e = parse_run_config("", "empty.yaml", {"model.path=m", "data.train=d", "train.output_dir=o"});
  EXPECT_EQ(e.model.path, "m");
}

TEST(Config, UnknownKeysSuggestTheClosestValidOne) {
  const std::string e = error_of(kBase + "optim:\n  learnig_rate: 1e-4\n");
  EXPECT_CONTAINS(e, "run.yaml:8: unknown key 'optim.learnig_rate' (did you mean 'optim.lr'?)");
  EXPECT_CONTAINS(error_of(kBase + "lora:\n  target_module: [q_proj]\n"), "did you mean 'lora.target_modules'?");
  EXPECT_CONTAINS(error_of(kBase + "lr: 1e-4\n"), "unknown key 'lr' (did you mean 'optim.lr'?)");
  EXPECT_CONTAINS(error_of(kBase, {"train.gradient_accumulation_steps=4"}),
                  "override 'train.gradient_accumulation_steps=4': unknown key "
                  "'train.gradient_accumulation_steps' (did you mean 'train.grad_accum'?)");
  EXPECT_CONTAINS(error_of(kBase, {"objective.gate.alpah=3"}), "did you mean 'objective.gate.alpha'?");
  EXPECT_CONTAINS(error_of(kBase, {"optim.bogus_thing=1"}), "keys under 'optim': lr beta1 beta2");
  EXPECT_CONTAINS(error_of(kBase, {"zzz.qqq=1"}), "(sections: model, data");
  EXPECT_CONTAINS(error_of(kBase, {"optim=1"}), "'optim' is a section");
  EXPECT_CONTAINS(error_of(kBase, {"optim.lr"}), "expected key=value");
}

TEST(Config, WrongTypesNameFileLineAndExpectedType) {
  EXPECT_CONTAINS(error_of(kBase + "train:\n  batch_size: eight\n"), "duplicate key 'train'");  // not merged
  const std::string base_without_train = "model:\n  path: m\ndata:\n  train: d\n";
  EXPECT_CONTAINS(error_of(base_without_train + "train:\n  epochs: 3\n  batch_size: eight\n"),
                  "run.yaml:7: train.batch_size: expected an integer, got 'eight'");
  EXPECT_CONTAINS(error_of(base_without_train + "train:\n  batch_size: 8.0\n"), "expected an integer, got '8.0'");
  EXPECT_CONTAINS(error_of(base_without_train + "optim:\n  lr: fast\n"), "run.yaml:6: optim.lr: expected a number, got 'fast'");
  EXPECT_CONTAINS(error_of(base_without_train + "optim:\n  lr: 1e999\n"), "must be a finite number");
  EXPECT_CONTAINS(error_of(base_without_train + "optim:\n  lr: .nan\n"), "expected a number, got '.nan'");
  EXPECT_CONTAINS(error_of(base_without_train + "lora:\n  enabled: yes\n"), "lora.enabled: expected true or false");
  EXPECT_CONTAINS(error_of(base_without_train + "lora:\n  r: [8]\n"), "lora.r: expected an integer, got a list");
  EXPECT_CONTAINS(error_of(base_without_train + "lora:\n  target_modules: {q: 1}\n"),
                  "lora.target_modules: expected a list of strings, got a mapping");
  EXPECT_CONTAINS(error_of(base_without_train + "optim: 3\n"), "run.yaml:5: 'optim' is a section");
  EXPECT_CONTAINS(error_of(base_without_train + "optim:\n  lr: [1\n"), "run.yaml:");
  EXPECT_CONTAINS(error_of(base_without_train + "optim:\n  lr: [1\n"), "YAML syntax error");
  EXPECT_CONTAINS(error_of("- a\n- b\n"), "expected a mapping of sections");
  EXPECT_CONTAINS(error_of(kBase, {"train.epochs=two"}), "override 'train.epochs=two': train.epochs: expected an integer");
}

TEST(Config, ValueChecks) {
  EXPECT_CONTAINS(error_of(kBase, {"optim.lr=0"}), "optim.lr = 0 must be > 0");
  EXPECT_CONTAINS(error_of(kBase, {"optim.lr=-1e-5"}), "optim.lr = -1e-05 must be > 0");
  EXPECT_CONTAINS(error_of(kBase, {"lora.r=0"}), "lora.r = 0 must be >= 1");
  EXPECT_CONTAINS(error_of(kBase, {"train.batch_size=0"}), "train.batch_size = 0 must be >= 1");
  EXPECT_CONTAINS(error_of(kBase, {"lora.dropout=1"}), "lora.dropout = 1 must be < 1");
  EXPECT_CONTAINS(error_of(kBase, {"data.harmful_fraction=1.5"}), "must be <= 1");
  EXPECT_CONTAINS(error_of(kBase, {"lora.target_modules=[q_proj,qkv_prj]"}),
                  "lora.target_modules: unknown name 'qkv_prj' (did you mean 'qkv_proj'?); valid: q_proj, k_proj, "
                  "v_proj, o_proj, gate_proj, up_proj, down_proj, qkv_proj, gate_up_proj");
  EXPECT_CONTAINS(error_of(kBase, {"lora.target_modules=[q_proj,q_proj]"}), "lists 'q_proj' twice");
  EXPECT_CONTAINS(error_of(kBase, {"lora.target_modules=[]"}), "lora.target_modules is empty");
  EXPECT_EQ(error_of(kBase, {"lora.target_modules=[]", "lora.enabled=false"}), "");  // full fine-tuning
  EXPECT_CONTAINS(error_of(kBase, {"objective.constraint=pakt"}),
                  "objective.constraint = 'pakt' is not one of: none, pact, kl_full, anchor, safety_mass (did you mean 'pact'?)");
  EXPECT_CONTAINS(error_of(kBase, {"schedule.type=cosine_with_restarts"}), "schedule.type = 'cosine_with_restarts' is not one of");
  EXPECT_CONTAINS(error_of(kBase, {"objective.positions=sometimes"}),
                  "objective.positions = 'sometimes' is not one of: all, first_n, probe");
  EXPECT_CONTAINS(error_of(kBase, {"objective.reference_mix=[gated]"}), "objective.reference_mix: expected a name");
  EXPECT_CONTAINS(error_of(kBase, {"train.device=gpu"}), "train.device = 'gpu' is not one of");
  EXPECT_CONTAINS(error_of(kBase, {"model.path="}), "model.path is required");
  EXPECT_CONTAINS(error_of("data:\n  train: d\n"), "model.path is required");
  // Errors name where the bad value came from: the file line, or the override.
  EXPECT_CONTAINS(error_of(kBase + "optim:\n  lr: -1\n"), "run.yaml:8: optim.lr = -1 must be > 0");
  EXPECT_CONTAINS(error_of(kBase + "optim:\n  lr: -1\n", {"optim.lr=-2"}), "override 'optim.lr=-2': optim.lr = -2");
  EXPECT_EQ(error_of(kBase + "optim:\n  lr: -1\n", {"optim.lr=2e-5"}), "");  // fixed on the command line
}

// Every rule that involves several fields, each stated once, in the config's validation
// (the trainer, `bench step` and `ref-cache` rely on it).
TEST(Config, CrossFieldRules) {
  EXPECT_CONTAINS(error_of(kBase, {"data.harmful_fraction=0.1"}), "needs data.harmful");
  // Safety tokens: pact and anchor use S, and positions = probe measures the mass on S.
  EXPECT_CONTAINS(error_of(kBase, {"objective.constraint=pact"}), "objective.constraint = pact needs objective.tokens");
  EXPECT_CONTAINS(error_of(kBase, {"objective.constraint=anchor"}), "anchor needs objective.tokens");
  EXPECT_CONTAINS(error_of(kBase, {"objective.constraint=kl_full", "objective.positions=probe"}),
                  "kl_full with positions = probe needs objective.tokens");
  EXPECT_EQ(error_of(kBase, {"objective.constraint=kl_full"}), "");
  EXPECT_EQ(error_of(kBase, {"objective.positions=probe"}), "");  // no constraint: nothing is selected
  // The reference: adapter_off switches LoRA adapters off; a cache holds S's columns only.
  EXPECT_CONTAINS(error_of(kBase, {"objective.reference=adapter_off", "lora.enabled=false"}), "needs LoRA");
  EXPECT_CONTAINS(error_of(kBase, {"objective.reference=cache"}), "needs objective.ref_cache");
  for (const char* kind : {"kl_full", "anchor"})
    EXPECT_CONTAINS(error_of(kBase, {std::string("objective.constraint=") + kind, "objective.tokens=t.json",
                                     "objective.reference=cache", "objective.ref_cache=c.safetensors"}),
                    "reference cache does not hold");
  EXPECT_EQ(error_of(kBase, {"objective.constraint=pact", "objective.tokens=t.json", "objective.reference=cache",
                             "objective.ref_cache=c.safetensors"}),
            "");
  EXPECT_CONTAINS(error_of(kBase, {"train.resume=auto", "train.overwrite=true"}), "contradict");
  // safety_mass: S from objective.tokens; a cache can serve it (its log-sum-exps are
  // checked when the cache is read).
  EXPECT_CONTAINS(error_of(kBase, {"objective.constraint=safety_mass"}),
                  "objective.constraint = safety_mass needs objective.tokens");
  EXPECT_EQ(error_of(kBase, {"objective.constraint=safety_mass", "objective.tokens=t.json",
                             "objective.reference=cache", "objective.ref_cache=c.safetensors"}),
            "");
  // An unknown constraint is an error naming the valid ones.
  EXPECT_CONTAINS(error_of(kBase, {"objective.constraint=bucket"}), "safety_mass");
}

// The temperature and reference mix default to the constraint's own (its descriptor):
// safety_mass 1 and the full context, the others 2 and gated as before; a value set in
// the file or an override stays, whichever constraint it comes with.
TEST(Config, ConstraintDefaultsFollowTheKind) {
  RunConfig c = parse_run_config(kBase, "run.yaml", {"objective.constraint=safety_mass", "objective.tokens=t.json"});
  EXPECT_EQ(c.objective.temperature, 1.0);
  EXPECT_EQ(c.objective.reference_mix, loss::ReferenceMix::full);
  for (const char* kind : {"none", "pact", "kl_full", "anchor"}) {
    c = parse_run_config(kBase, "run.yaml", {std::string("objective.constraint=") + kind, "objective.tokens=t.json"});
    EXPECT_EQ(c.objective.temperature, 2.0) << kind;
    EXPECT_EQ(c.objective.reference_mix, loss::ReferenceMix::gated) << kind;
  }
  c = parse_run_config(kBase + "objective:\n  temperature: 2.0\n  reference_mix: gated\n", "run.yaml",
                       {"objective.constraint=safety_mass", "objective.tokens=t.json"});
  EXPECT_EQ(c.objective.temperature, 2.0);
  EXPECT_EQ(c.objective.reference_mix, loss::ReferenceMix::gated);
  c = parse_run_config(kBase, "run.yaml", {"objective.temperature=1.5", "objective.constraint=pact", "objective.tokens=t.json"});
  EXPECT_EQ(c.objective.temperature, 1.5);
  // A config in memory: a value still at the previous constraint's default follows the new one.
  RunConfig m;
  apply_override(m, "objective.constraint=safety_mass");
  EXPECT_EQ(m.objective.temperature, 1.0);
  EXPECT_EQ(m.objective.reference_mix, loss::ReferenceMix::full);
  apply_override(m, "objective.temperature=3");
  apply_override(m, "objective.constraint=pact");
  EXPECT_EQ(m.objective.temperature, 3.0);
  EXPECT_EQ(m.objective.reference_mix, loss::ReferenceMix::gated);
  // --list-keys says it.
  EXPECT_CONTAINS(config_reference(), "safety_mass 1");
}

// The resolved YAML parses back to the identical config, for defaults and for a config
// with every kind of value changed (awkward strings and doubles included).
// data.columns / data.harmful_columns: a YAML mapping, or the text form --columns takes,
// in the file and as overrides; bad names are errors naming the file and line.
TEST(Config, ColumnMappings) {
  // data: last, so that a test appends its keys there (line 7 on).
  const std::string base = "model:\n  path: m\ntrain:\n  output_dir: r\ndata:\n  train: t.csv\n";
  const data::ColumnMap advbench = {{"instruction", "goal"}, {"output", "target"}};
  RunConfig c = parse_run_config(base + "  harmful_columns: {instruction: goal, output: target}\n", "run.yaml");
  EXPECT_EQ(c.data.harmful_columns, advbench);
  EXPECT_TRUE(c.data.columns.empty());
  c = parse_run_config(base + "  columns:\n    prompt: question\n    completion: answer\n", "run.yaml");
  EXPECT_EQ(c.data.columns, (data::ColumnMap{{"prompt", "question"}, {"completion", "answer"}}));
  c = parse_run_config(base + "  harmful_columns: instruction=goal, output=target\n", "run.yaml");
  EXPECT_EQ(c.data.harmful_columns, advbench);
  // Overrides: the text form, or a YAML flow mapping; empty clears it.
  c = parse_run_config(base, "run.yaml", {"data.harmful_columns=instruction=goal,output=target"});
  EXPECT_EQ(c.data.harmful_columns, advbench);
  c = parse_run_config(base, "run.yaml", {"data.harmful_columns={instruction: goal, output: target}"});
  EXPECT_EQ(c.data.harmful_columns, advbench);
  c = parse_run_config(base + "  columns: {prompt: q}\n", "run.yaml", {"data.columns="});
  EXPECT_TRUE(c.data.columns.empty());

  EXPECT_EQ(error_of(base + "  columns: {instuction: goal}\n"),
            "run.yaml:7: data.columns: column mapping: unknown field 'instuction' (fields: instruction, input, output, "
            "prompt, completion, messages)");
  EXPECT_EQ(error_of(base + "  columns: [goal, target]\n"), "run.yaml:7: data.columns: expected a column mapping, got a list");
  EXPECT_EQ(error_of(base + "  columns: {prompt: [a, b]}\n"), "run.yaml:7: data.columns: expected field: column pairs of names");
  EXPECT_CONTAINS(error_of(base, {"data.harmful_columns=goal"}), "'goal' is not field=column");
  EXPECT_EQ(suggest_key("data.column"), "data.columns");
}

TEST(Config, ResolvedYamlRoundTrips) {
  const RunConfig defaults = parse_run_config(kBase, "run.yaml");
  const std::string y0 = to_yaml(defaults);
  EXPECT_TRUE(same_config(parse_run_config(y0, "config.resolved.yaml"), defaults)) << y0;

  RunConfig c = defaults;
  c.model.path = "dir with spaces/\"quoted\" 'single' # not a comment: colon\\back";
  c.model.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}\ttab é";
  c.data.eval = "true";  // a string that looks like a bool
  c.data.harmful = "0.5";
  c.data.harmful_fraction = 1.0 / 3.0;
  c.optim.lr = 2.9999999999999997e-05;
  c.optim.eps = 1e-300;
  c.optim.beta2 = 0.1 + 0.2;
  c.lora.enabled = false;
  c.lora.r = 123456789012;
  c.lora.target_modules = {"up_proj", "gate_proj"};
  c.schedule.type = ScheduleType::linear;
  c.train.seed = -7;
  c.objective.gate.b = -0.25;
  c.objective.constraint = loss::ConstraintKind::pact;
  c.objective.positions = loss::Positions::first_n;
  c.objective.reference_mix = loss::ReferenceMix::post;
  c.objective.tokens = "t.json";
  c.data.columns = {{"prompt", "question: \"the\" text"}, {"completion", "a,b=c"}};  // names the text form cannot hold
  c.data.harmful_columns = {{"instruction", "goal"}, {"output", "target"}};
  const std::string y1 = to_yaml(c);
  const RunConfig back = parse_run_config(y1, "config.resolved.yaml");
  EXPECT_TRUE(same_config(back, c)) << y1;
  EXPECT_EQ(back.model.path, c.model.path);
  EXPECT_EQ(back.model.chat_template, c.model.chat_template);
  EXPECT_EQ(back.optim.beta2, c.optim.beta2);
  EXPECT_EQ(to_yaml(back), y1);
  // same_config is not vacuous.
  RunConfig d = c;
  d.objective.gate.prefix_tau += 1e-12;
  EXPECT_FALSE(same_config(d, c));
  d = c;
  d.lora.target_modules.pop_back();
  EXPECT_FALSE(same_config(d, c));
  d = c;
  d.objective.reference_mix = loss::ReferenceMix::gated;
  EXPECT_FALSE(same_config(d, c));
  d = c;
  d.data.harmful_columns["output"] = "targets";
  EXPECT_FALSE(same_config(d, c));
  // Every field is written, with its doc as a comment.
  EXPECT_CONTAINS(y0, "  lr: 3.0e-05  # AdamW learning rate");
  EXPECT_CONTAINS(y0, "  gate:\n    enabled: true");
}

TEST(Config, SuggestKey) {
  EXPECT_EQ(suggest_key("optim.learning_rate"), "optim.lr");
  EXPECT_EQ(suggest_key("train.epoch"), "train.epochs");
  EXPECT_EQ(suggest_key("train.max_grad_norm"), "optim.grad_clip");
  EXPECT_EQ(suggest_key("lora.lora_alpha"), "lora.alpha");
  EXPECT_EQ(suggest_key("completely.unrelated"), "");
  EXPECT_NE(config_reference().find("optim.lr (a number, default 3e-05)"), std::string::npos);
}

// The shipped examples stay valid (their placeholders are non-empty strings).
TEST(Config, ShippedConfigsLoad) {
  const std::string dir = std::string(SAFETUNE_SOURCE_DIR) + "/configs/";
  const RunConfig tiny = load_run_config(dir + "tiny.yaml");
  EXPECT_EQ(tiny.lora.r, 4);
  EXPECT_EQ(tiny.model.dtype, ModelDtype::fp32);
  const RunConfig llama = load_run_config(dir + "llama3-8b.yaml");
  EXPECT_EQ(llama.optim.lr, 3e-5);
  EXPECT_EQ(llama.lora.r, 8);
  EXPECT_EQ(llama.objective.constraint, loss::ConstraintKind::pact);
  const RunConfig qwen = load_run_config(dir + "qwen2.5-7b.yaml");
  EXPECT_EQ(qwen.objective.constraint, loss::ConstraintKind::pact);
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".yaml") {
      EXPECT_NO_THROW(load_run_config(entry.path().string())) << entry.path();
    }
  EXPECT_THROW(load_run_config(dir + "does-not-exist.yaml"), InputError);
}

// Evaluation during training: something to evaluate on, rules naming known metrics that
// the configured sources give, each error naming its key.
TEST(Config, EvaluationRules) {
  const std::vector<std::string> suite = {"train.eval_every=5", "train.eval_suite=suite.json"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> o = suite;
    o.insert(o.end(), extra.begin(), extra.end());
    return error_of(kBase, o);
  };
  EXPECT_EQ(with({}), "");
  EXPECT_EQ(with({"train.keep_best=refusal+utility:max", "train.early_stop=refusal<0.5x"}), "");
  EXPECT_EQ(error_of(kBase, {"train.eval_every=5", "data.eval=held.jsonl", "train.keep_best=val_ce:min",
                             "train.early_stop=val_ce>4"}),
            "");

  const std::string none = error_of(kBase, {"train.eval_every=5"});
  EXPECT_CONTAINS(none, "train.eval_every = 5 needs held-out records (data.eval) or a suite (train.eval_suite)");
  EXPECT_CONTAINS(error_of(kBase, {"train.eval_suite=suite.json"}), "train.eval_suite is set but train.eval_every = 0");

  const std::string unknown = with({"train.keep_best=refusl:max"});
  EXPECT_CONTAINS(unknown, "train.keep_best: unknown metric 'refusl'");
  EXPECT_CONTAINS(unknown, "valid: val_ce, val_total, val_constraint, refusal, asr, utility, margin");
  EXPECT_CONTAINS(with({"train.keep_best=refusal"}), "train.keep_best = 'refusal': expected METRIC:max or METRIC:min");
  EXPECT_CONTAINS(with({"train.keep_best=refusal:up"}), "the direction after ':' must be max or min, got 'up'");
  EXPECT_CONTAINS(with({"train.keep_best=refusal+:max"}), "train.keep_best: unknown metric ''");
  EXPECT_CONTAINS(with({"train.early_stop=refusal"}), "train.early_stop = 'refusal': expected METRIC<BOUND");
  EXPECT_CONTAINS(with({"train.early_stop=refusal<half"}), "the bound must be a number");
  EXPECT_CONTAINS(with({"train.early_stop=refusals<0.5x"}), "train.early_stop: unknown metric 'refusals'");

  // A metric needs its source.
  EXPECT_CONTAINS(with({"train.keep_best=val_ce:min"}), "train.keep_best: metric 'val_ce' comes from held-out records: set data.eval");
  EXPECT_CONTAINS(error_of(kBase, {"train.eval_every=5", "data.eval=h.jsonl", "train.early_stop=refusal<0.5x"}),
                  "train.early_stop: metric 'refusal' comes from a suite: set train.eval_suite");
  EXPECT_CONTAINS(error_of(kBase, {"data.eval=h.jsonl", "train.keep_best=val_ce:min"}),
                  "train.keep_best needs evaluations: set train.eval_every > 0");
  EXPECT_CONTAINS(error_of(kBase, {"train.eval_every=5", "data.eval=h.jsonl", "train.keep_best=val_constraint:min"}),
                  "metric 'val_constraint' needs a constraint");
  EXPECT_CONTAINS(with({"train.keep_best=margin:max", "train.eval_refusal_start="}), "metric 'margin' needs");
  // The error points at where the key was set.
  EXPECT_CONTAINS(error_of(kBase + "  eval_every: 5\n  eval_suite: s.json\n  keep_best: nope:max\n"), "run.yaml:9");
}
