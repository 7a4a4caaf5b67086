// RunConfig from YAML + key=value overrides, validation, and the resolved YAML.
//
// Everything is driven by one table of fields (kFields below): a dotted name, an accessor
// returning a typed pointer into RunConfig, the allowed values, aliases used only to
// suggest the right name, and a doc string. Adding a field = one line in the table.
#include "safetune/train/config.h"

// GCC 12 flags yaml-cpp 0.7's own headers with a false -Wdangling-pointer.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#include <yaml-cpp/yaml.h>
#pragma GCC diagnostic pop
#else
#include <yaml-cpp/yaml.h>
#endif

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <type_traits>
#include <variant>

#include "safetune/core/device_name.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/model/lora_targets.h"
#include "safetune/text/unicode.h"
#include "safetune/train/eval_rules.h"

namespace safetune::train {

const std::vector<std::string>& names_of(ModelDtype) {
  static const std::vector<std::string> names = {"auto", "fp32", "bf16", "fp16"};
  return names;
}
const std::vector<std::string>& names_of(ScheduleType) {
  static const std::vector<std::string> names = {"constant", "linear", "cosine", "step_lr"};
  return names;
}
const std::vector<std::string>& names_of(Resume) {
  static const std::vector<std::string> names = {"none", "auto"};
  return names;
}
const std::vector<std::string>& names_of(Target) {
  static const std::vector<std::string> names = {"weighted", "reference"};
  return names;
}
const std::vector<std::string>& names_of(ReferenceKind) {
  static const std::vector<std::string> names = {"auto", "copy", "adapter_off", "cache"};
  return names;
}

namespace {

std::string format_double(double v);

// The constraints (by name) whose descriptor has a property, "a, b and c", for the docs
// of --list-keys: the descriptors say it, the text follows.
template <class Pred>
std::string kinds_that(const std::string& verb, Pred has) {
  std::vector<std::string> names;
  for (const std::string& n : loss::names_of(loss::ConstraintKind{}))
    if (has(loss::descriptor_of(*loss::parse_name<loss::ConstraintKind>(n)))) names.push_back(n);
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  return verb.empty() ? out : out + " " + verb;
}

// "kind: summary; ..." over the constraints, from their descriptors.
std::string summaries() {
  std::string out;
  for (const std::string& n : loss::names_of(loss::ConstraintKind{}))
    out += (out.empty() ? "" : "; ") + n + ": " + loss::descriptor_of(*loss::parse_name<loss::ConstraintKind>(n)).summary;
  return out;
}

// "kind value, ..." over the constraints for which `value` gives a non-empty text.
template <class Value>
std::string per_kind(Value value) {
  std::string out;
  for (const std::string& n : loss::names_of(loss::ConstraintKind{})) {
    const std::string v = value(loss::descriptor_of(*loss::parse_name<loss::ConstraintKind>(n)));
    if (n != "none" && !v.empty()) out += (out.empty() ? "" : ", ") + n + " " + v;
  }
  return out;
}

// An enumerated field (this module's choices in config.h, the loss module's in
// loss/constraint_choices.h), read and written as the index of its name among names_of(E).
struct Choice {
  void* p;
  size_t (*get)(const void*);
  void (*set)(void*, size_t);
  const std::vector<std::string>* names;
  const std::string& name() const { return (*names)[get(p)]; }
};
template <class E>
Choice choice_of(E* p) {
  return {p, [](const void* q) { return static_cast<size_t>(*static_cast<const E*>(q)); },
          [](void* q, size_t i) { *static_cast<E*>(q) = static_cast<E>(i); }, &names_of(E{})};
}

// A typed pointer to one field of a RunConfig.
using Ref = std::variant<bool*, int64_t*, double*, std::string*, std::vector<std::string>*, Choice, data::ColumnMap*>;
const char* const kTypeNames[] = {"true or false", "an integer",        "a number",
                                  "a string",      "a list of strings", "a name",
                                  "a column mapping"};

template <class T>
Ref ref_of(T* p) {
  if constexpr (std::is_enum_v<T>) return choice_of(p);
  else return p;
}

struct Bound {
  double value;
  bool open;  // strict inequality
};

struct Field {
  std::string name;              // dotted, e.g. "optim.lr"
  Ref (*ref)(RunConfig&);        // where the value lives
  std::string doc;
  std::optional<Bound> lo, hi;   // numbers: allowed range
  std::vector<std::string> one_of;  // enums: their names; lists: allowed items
  bool required = false;         // strings: must not be empty
  std::vector<std::string> aliases;  // other tools' names for it (suggestions only)

  Field(std::string n, Ref (*r)(RunConfig&), std::string d) : name(std::move(n)), ref(r), doc(std::move(d)) {
    RunConfig defaults;
    const Ref value = ref(defaults);
    if (const auto* c = std::get_if<Choice>(&value)) one_of = *c->names;  // an enum: its names
  }
  Field& min(double v) { lo = Bound{v, false}; return *this; }
  Field& above(double v) { lo = Bound{v, true}; return *this; }
  Field& max(double v) { hi = Bound{v, false}; return *this; }
  Field& below(double v) { hi = Bound{v, true}; return *this; }
  // A list's allowed items (a single choice is an enum: its names are already here).
  Field& choices(std::vector<std::string> c) { one_of = std::move(c); return *this; }
  Field& must_be_set() { required = true; return *this; }
  Field& alias(std::vector<std::string> a) { aliases = std::move(a); return *this; }
};

#define F(name, member, doc) Field(name, [](RunConfig& c) -> Ref { return ref_of(&c.member); }, doc)

const std::vector<Field>& fields() {
  static const std::vector<Field> table = [] {
    std::vector<Field> t;
    // model
    t.push_back(F("model.path", model.path, "HF model directory (config.json, *.safetensors, tokenizer)")
                    .must_be_set().alias({"model_name_or_path", "name", "dir"}));
    t.push_back(F("model.dtype", model.dtype, "weights/compute dtype; auto = bf16 on CUDA, fp32 on CPU")
                    .alias({"torch_dtype", "precision"}));
    t.push_back(F("model.chat_template", model.chat_template,
                  "file with a chat template replacing the tokenizer's; empty = the tokenizer's")
                    .alias({"template"}));
    // data
    t.push_back(F("data.train", data.train, "training records (JSON, JSONL, CSV or TSV with a header row)")
                    .must_be_set().alias({"train_file", "dataset", "path", "train_path"}));
    t.push_back(F("data.eval", data.eval, "held-out records; empty = none").alias({"eval_file", "validation", "eval_path"}));
    t.push_back(F("data.columns", data.columns,
                  "which column of data.train (and data.eval) feeds each record field, as {field: column} or "
                  "field=column,...; empty = columns named after the fields")
                    .alias({"column_mapping", "fields", "mapping"}));
    t.push_back(F("data.max_length", data.max_length, "tokens per example (prompt + response); longer ones are truncated")
                    .min(2).alias({"max_seq_length", "max_len", "seq_len", "cutoff_len"}));
    t.push_back(F("data.num_examples", data.num_examples, "examples drawn per run; 0 = all").min(0).alias({"num_samples", "n"}));
    t.push_back(F("data.harmful", data.harmful, "harmful records mixed into the training set").alias({"harmful_path"}));
    t.push_back(F("data.harmful_columns", data.harmful_columns,
                  "data.columns for data.harmful, e.g. {instruction: goal, output: target} for AdvBench's CSV")
                    .alias({"harmful_mapping", "harmful_fields"}));
    t.push_back(F("data.harmful_fraction", data.harmful_fraction, "share of the examples that are harmful")
                    .min(0).max(1).alias({"poison_ratio", "harmful_ratio", "p"}));
    t.push_back(F("data.shuffle", data.shuffle, "shuffle the example order every epoch"));
    t.push_back(F("data.seed", data.seed, "seed of the data order and of the harmful sample").alias({"shuffle_seed", "data_seed"}));
    // lora
    t.push_back(F("lora.enabled", lora.enabled, "true: train LoRA adapters; false: full fine-tuning")
                    .alias({"use_lora", "lora", "mode"}));
    t.push_back(F("lora.r", lora.r, "adapter rank").min(1).alias({"rank", "lora_r"}));
    t.push_back(F("lora.alpha", lora.alpha, "adapter scaling = alpha / r").above(0).alias({"lora_alpha"}));
    t.push_back(F("lora.dropout", lora.dropout, "dropout on the adapter input").min(0).below(1).alias({"lora_dropout"}));
    t.push_back(F("lora.target_modules", lora.target_modules, "HF module names that get adapters")
                    .choices(model::lora_target_names()).alias({"targets", "modules", "target"}));
    // optim
    t.push_back(F("optim.lr", optim.lr, "AdamW learning rate (the reference code's own default is 1e-4)")
                    .above(0).alias({"learning_rate", "lr_rate", "rate"}));
    t.push_back(F("optim.beta1", optim.beta1, "AdamW first-moment decay").min(0).below(1).alias({"adam_beta1", "b1"}));
    t.push_back(F("optim.beta2", optim.beta2, "AdamW second-moment decay").min(0).below(1).alias({"adam_beta2", "b2"}));
    t.push_back(F("optim.eps", optim.eps, "AdamW denominator epsilon").above(0).alias({"adam_epsilon", "epsilon"}));
    t.push_back(F("optim.weight_decay", optim.weight_decay, "decoupled weight decay (torch.optim.AdamW)")
                    .min(0).alias({"wd", "decay"}));
    t.push_back(F("optim.grad_clip", optim.grad_clip, "max global L2 norm of the gradients; 0 = no clipping")
                    .min(0).alias({"max_grad_norm", "clip_grad_norm", "gradient_clipping", "clip"}));
    // schedule
    t.push_back(F("schedule.type", schedule.type, "learning-rate schedule")
                    .alias({"lr_scheduler_type", "scheduler", "name", "kind"}));
    t.push_back(F("schedule.warmup_steps", schedule.warmup_steps, "linear warm-up from 0 over this many steps")
                    .min(0).alias({"warmup", "num_warmup_steps"}));
    t.push_back(F("schedule.gamma", schedule.gamma, "step_lr: lr x gamma^epoch").above(0).max(1).alias({"step_gamma", "decay"}));
    t.push_back(F("schedule.num_cycles", schedule.num_cycles, "cosine: number of cosine cycles (0.5 = decay to 0)")
                    .above(0).alias({"cycles"}));
    // train
    t.push_back(F("train.output_dir", train.output_dir, "run directory (checkpoints, metrics, resolved config)")
                    .must_be_set().alias({"out", "output", "dir", "run_dir"}));
    t.push_back(F("train.epochs", train.epochs, "passes over the data (unless max_steps > 0)")
                    .min(1).alias({"num_train_epochs", "num_epochs", "epoch"}));
    t.push_back(F("train.max_steps", train.max_steps, "optimizer steps; > 0 overrides epochs").min(0).alias({"steps"}));
    t.push_back(F("train.batch_size", train.batch_size, "examples per micro-batch")
                    .min(1).alias({"per_device_train_batch_size", "micro_batch_size", "batch", "bs"}));
    t.push_back(F("train.grad_accum", train.grad_accum, "micro-batches per optimizer step")
                    .min(1).alias({"gradient_accumulation_steps", "accumulation_steps", "grad_accumulation"}));
    t.push_back(F("train.seed", train.seed, "seed of adapter init and dropout"));
    t.push_back(F("train.threads", train.threads, "CPU threads; 0 = all cores").min(0).alias({"num_threads", "workers"}));
    t.push_back(F("train.device", train.device,
                  "cpu | cuda | cuda:N | auto (cuda when a GPU is visible, else cpu). On CUDA, model.dtype=auto "
                  "means bf16 weights, with fp32 master weights and moments in AdamW for the trained parameters")
                    .alias({"device", "accelerator", "gpu"}));
    t.push_back(F("train.activation_checkpointing", train.activation_checkpointing,
                  "recompute layer activations in backward to save memory")
                    .alias({"gradient_checkpointing", "checkpointing"}));
    t.push_back(F("train.log_every", train.log_every, "optimizer steps between metric records").min(1).alias({"logging_steps"}));
    t.push_back(F("train.save_every", train.save_every, "optimizer steps between checkpoints; 0 = only at the end")
                    .min(0).alias({"save_steps", "checkpoint_every"}));
    t.push_back(F("train.keep_checkpoints", train.keep_checkpoints,
                  "newest checkpoints kept on disk (older ones deleted after each save); 0 = all")
                    .min(0).alias({"save_total_limit"}));
    t.push_back(F("train.resume", train.resume, "auto: continue from output_dir's latest checkpoint")
                    .alias({"resume_from_checkpoint"}));
    t.push_back(F("train.overwrite", train.overwrite, "allow an output_dir that already holds another run")
                    .alias({"overwrite_output_dir", "force"}));
    t.push_back(F("train.max_bad_steps", train.max_bad_steps,
                  "steps in a row with a non-finite loss or gradient (each skipped, no update) before the run "
                  "stops with exit code 3")
                    .min(1).alias({"max_nan_steps", "nan_patience", "max_skipped_steps"}));
    t.push_back(F("train.dist_timeout_s", train.dist_timeout_s,
                  "multi-process runs: seconds to wait for the other ranks before failing")
                    .above(0).alias({"ddp_timeout"}));
    t.push_back(F("train.eval_every", train.eval_every,
                  "optimizer steps between evaluations on data.eval and train.eval_suite (also at step 0 and at "
                  "the last step); 0 = none")
                    .min(0).alias({"eval_steps", "evaluation_steps", "eval_interval"}));
    t.push_back(F("train.eval_suite", train.eval_suite,
                  "suite JSON (as `safetune eval --suite`) answered at each evaluation: refusal, utility, margin")
                    .alias({"suite", "eval_set"}));
    t.push_back(F("train.eval_batch_size", train.eval_batch_size,
                  "prompts generated together at an evaluation (as `safetune eval --batch-size`), and held-out "
                  "examples per batch")
                    .min(1).alias({"per_device_eval_batch_size"}));
    t.push_back(F("train.eval_max_new_tokens", train.eval_max_new_tokens,
                  "answer length of the suite's sets that give no max_new_tokens of their own")
                    .min(1).alias({"max_new_tokens"}));
    t.push_back(F("train.eval_refusal_start", train.eval_refusal_start,
                  "first-token margin: a refusal's start (its first token counts); empty = no margin"));
    t.push_back(F("train.eval_compliance_start", train.eval_compliance_start,
                  "first-token margin: a compliance's start (its first token counts); empty = no margin"));
    t.push_back(F("train.keep_best", train.keep_best,
                  "METRIC:max|min (METRIC may be a sum, refusal+utility): keep the best evaluated weights in "
                  "run_dir/best; empty = off")
                    .alias({"metric_for_best_model", "load_best_model_at_end", "best"}));
    t.push_back(F("train.early_stop", train.early_stop,
                  "METRIC<BOUND or METRIC>BOUND, BOUND a number or Nx (N x the first evaluated value): stop when "
                  "an evaluation crosses it; empty = off")
                    .alias({"early_stopping", "stop_when"}));
    // objective
    t.push_back(F("objective.constraint", objective.constraint, "safety constraint added to the task loss: " + summaries())
                    .alias({"method", "defense", "type"}));
    t.push_back(F("objective.lambda", objective.lambda, "loss = CE + lambda x constraint").min(0).alias({"kl_weight", "weight", "beta"}));
    t.push_back(F("objective.tokens", objective.tokens,
                  "safety tokens (tokens.json from `safetune tokens`); " + kinds_that("need them", [](const loss::ConstraintDescriptor& d) { return d.needs_tokens; }) +
                      ", and so do positions = probe and safety_start")
                    .alias({"tokens_path", "safety_tokens"}));
    t.push_back(F("objective.temperature", objective.temperature,
                  "temperature T of the constraint KL (scaled by T^2); unless set, the constraint's own: " +
                      per_kind([](const loss::ConstraintDescriptor& d) { return format_double(d.default_temperature); }))
                    .above(0).alias({"T", "kl_temperature", "temp"}));
    t.push_back(F("objective.positions", objective.positions, "response positions that are constrained"));
    t.push_back(F("objective.first_n", objective.first_n, "positions = first_n: how many").min(1));
    t.push_back(F("objective.probe_tau", objective.probe_tau,
                  "positions = probe (at the position) and safety_start (at the example's first response "
                  "position): minimum reference probability mass on the safety tokens")
                    .min(0).max(1));
    t.push_back(F("objective.target", objective.target,
                  "pact's target on S: weighted = PACT's q (reference x max(v, 0), renormalised); reference = "
                  "the reference itself on S (v only selects S: zero at model == reference)"));
    t.push_back(F("objective.reference_mix", objective.reference_mix,
                  "the reference of " + kinds_that("", [](const loss::ConstraintDescriptor& d) { return d.mixes_post_context; }) +
                      ": gated (full/post-only mix by the gate), full or post only; unless set, the constraint's own: " +
                      per_kind([](const loss::ConstraintDescriptor& d) {
                        return d.mixes_post_context ? loss::name_of(d.default_reference_mix) : std::string();
                      })));
    t.push_back(F("objective.reference", objective.reference,
                  "frozen reference: auto = adapter_off with LoRA, copy otherwise; cache = precomputed logits")
                    .alias({"ref", "reference_model"}));
    t.push_back(F("objective.ref_cache", objective.ref_cache, "reference = cache: file from `safetune ref-cache`")
                    .alias({"cache", "reference_cache"}));
    t.push_back(F("objective.fused", objective.fused, "CE + constraint in one chunked op from hidden states (never the full [tokens x vocab] logits); false: the plain composition, for checking"));
    t.push_back(F("objective.gate.enabled", objective.gate.enabled, "false: always mix in the full-context reference only"));
    t.push_back(F("objective.gate.alpha", objective.gate.alpha, "c_t = sigmoid(alpha (I_theta - I_post - b))").min(0));
    t.push_back(F("objective.gate.b", objective.gate.b, "gate offset b"));
    t.push_back(F("objective.gate.top_p", objective.gate.top_p, "nucleus mass that defines the spread I = k_p / |S|")
                    .above(0).max(1).alias({"p"}));
    t.push_back(F("objective.gate.temperature", objective.gate.temperature, "temperature of the spread's softmax")
                    .above(0).alias({"T", "temp"}));
    t.push_back(F("objective.gate.prefix_n", objective.gate.prefix_n, "N: positions t <= N keep the full gate").min(0).alias({"n", "N"}));
    t.push_back(F("objective.gate.prefix_tau", objective.gate.prefix_tau, "tau_d: gate x exp(-max(t - N, 0) / tau_d)")
                    .above(0).alias({"tau_d", "tau"}));
    return t;
  }();
  return table;
}
#undef F

const Field* find_field(const std::string& name) {
  for (const Field& f : fields())
    if (f.name == name) return &f;
  return nullptr;
}

bool is_section(const std::string& name) {
  for (const Field& f : fields())
    if (f.name.size() > name.size() && f.name.compare(0, name.size(), name) == 0 && f.name[name.size()] == '.')
      return true;
  return false;
}

std::string section_of(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? "" : name.substr(0, dot);
}
std::string leaf_of(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

// Optimal-string-alignment distance (Levenshtein + adjacent transpositions).
size_t edit_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  // Valid names are short, so when the lengths differ this much the length difference (a
  // lower bound) is already past every suggestion threshold: the answer is the same without
  // an n x m table for a stranger's megabyte-long key.
  if (std::max(n, m) - std::min(n, m) > 64) return std::max(n, m) - std::min(n, m);
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

// Closest of `candidates` to `word`, if within a typo's reach.
std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best_d <= std::max<size_t>(2, word.size() / 3) ? best : "";
}

// A field's allowed values, comma separated.
std::string choices_text(const Field& f) {
  std::string s;
  for (const std::string& c : f.one_of) s += (s.empty() ? "" : ", ") + c;
  return s;
}

[[noreturn]] void not_one_of(const Field& f, const std::string& value, const std::string& where) {
  const std::string near = closest(value, f.one_of);
  input_error(where, f.name + " = '" + value + "' is not one of: " + choices_text(f) +
                         (near.empty() ? "" : " (did you mean '" + near + "'?)"));
}

// ---- values: text forms and conversions -------------------------------------------------

std::string format_double(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest form that reads back exactly
  return std::string(buf, r.ptr);
}

std::string value_text(const Ref& ref) {
  struct {
    std::string operator()(bool* v) const { return *v ? "true" : "false"; }
    std::string operator()(int64_t* v) const { return std::to_string(*v); }
    std::string operator()(double* v) const { return format_double(*v); }
    std::string operator()(std::string* v) const { return "'" + *v + "'"; }
    std::string operator()(std::vector<std::string>* v) const {
      std::string s = "[";
      for (size_t i = 0; i < v->size(); ++i) s += (i ? ", " : "") + (*v)[i];
      return s + "]";
    }
    std::string operator()(const Choice& c) const { return "'" + c.name() + "'"; }
    std::string operator()(data::ColumnMap* m) const {
      std::string s = "{";
      for (const auto& [field, column] : *m) s += (s.size() > 1 ? ", " : "") + field + ": " + column;
      return s + "}";
    }
  } visit;
  return std::visit(visit, ref);
}

std::string where_of(const std::string& file, const YAML::Mark& mark) {
  return mark.line >= 0 ? file + ":" + std::to_string(mark.line + 1) : file;
}

// Sets one field from a YAML node (a scalar, a sequence or null). Strict: "8.0" is not an
// integer, "yes" is not a bool, non-finite numbers are refused.
void set_from_node(const Field& f, RunConfig& cfg, const YAML::Node& node, const std::string& where) {
  const Ref ref = f.ref(cfg);
  const char* expected = kTypeNames[ref.index()];
  auto fail = [&](const std::string& got) { input_error(where, f.name + ": expected " + expected + ", got " + got); };
  auto describe = [&](const YAML::Node& n) -> std::string {
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    if (n.IsNull()) return "nothing";
    return "'" + n.Scalar() + "'";
  };

  if (auto* s = std::get_if<std::string*>(&ref)) {
    if (node.IsNull()) **s = "";
    else if (node.IsScalar()) **s = node.Scalar();
    else fail(describe(node));
    return;
  }
  if (auto* m = std::get_if<data::ColumnMap*>(&ref)) {
    // {field: column, ...}, or the text form field=column,... (as --columns takes it).
    data::ColumnMap columns;
    if (node.IsMap()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node k = it->first, v = it->second;
        if (!k.IsScalar() || !v.IsScalar()) input_error(where, f.name + ": expected field: column pairs of names");
        if (!columns.emplace(k.Scalar(), v.Scalar()).second)
          input_error(where, f.name + ": field '" + k.Scalar() + "' is mapped twice");
      }
    } else if (node.IsScalar()) {
      columns = data::parse_column_map(node.Scalar(), where + ": " + f.name);
    } else if (!node.IsNull()) {
      fail(describe(node));
    }
    data::check_column_map(columns, where + ": " + f.name);
    **m = std::move(columns);
    return;
  }
  if (auto* l = std::get_if<std::vector<std::string>*>(&ref)) {
    std::vector<std::string> items;
    if (node.IsSequence()) {
      for (const YAML::Node& item : node) {
        if (!item.IsScalar()) input_error(where_of(where, item.Mark()), f.name + ": list items must be strings");
        items.push_back(item.Scalar());
      }
    } else if (node.IsScalar()) {
      items.push_back(node.Scalar());  // a single name is a one-element list
    } else if (!node.IsNull()) {
      fail(describe(node));
    }
    **l = std::move(items);
    return;
  }
  if (!node.IsScalar()) fail(describe(node));
  const std::string& text = node.Scalar();
  if (auto* c = std::get_if<Choice>(&ref)) {
    const auto it = std::find(c->names->begin(), c->names->end(), text);
    if (it == c->names->end()) not_one_of(f, text, where);
    c->set(c->p, static_cast<size_t>(it - c->names->begin()));
    return;
  }
  if (auto* b = std::get_if<bool*>(&ref)) {
    if (text == "true" || text == "True" || text == "TRUE") **b = true;
    else if (text == "false" || text == "False" || text == "FALSE") **b = false;
    else fail(describe(node));
  } else if (auto* i = std::get_if<int64_t*>(&ref)) {
    int64_t v = 0;
    const char* begin = text.data() + (text.size() > 1 && text[0] == '+' ? 1 : 0);
    auto r = std::from_chars(begin, text.data() + text.size(), v);
    if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size()) fail(describe(node));
    **i = v;
  } else if (auto* d = std::get_if<double*>(&ref)) {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size()) fail(describe(node));
    if (!std::isfinite(v)) input_error(where, f.name + ": must be a finite number, got '" + text + "'");
    **d = v;
  }
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& where) {
  std::string msg = "unknown key '" + key + "'";
  const std::string s = suggest_key(key);
  if (!s.empty()) {
    msg += " (did you mean '" + s + "'?)";
  } else if (is_section(section_of(key))) {
    msg += " (keys under '" + section_of(key) + "':";
    for (const Field& f : fields())
      if (section_of(f.name) == section_of(key)) msg += " " + leaf_of(f.name);
    msg += ")";
  } else {
    msg += " (sections: model, data, lora, optim, schedule, train, objective)";
  }
  input_error(where, msg);
}

// Where each field got its value from, for validation messages.
using Origins = std::map<std::string, std::string>;

void walk(const YAML::Node& map, const std::string& prefix, RunConfig& cfg, const std::string& file, Origins& origins) {
  std::set<std::string> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    // Copies, not references: yaml-cpp's iterator hands out a temporary pair, so a
    // reference to it->first dangles once this statement ends.
    const YAML::Node key_node = it->first;
    const YAML::Node value = it->second;
    const std::string at = where_of(file, key_node.Mark());
    if (!key_node.IsScalar()) input_error(at, "keys must be plain names");
    const std::string key = prefix + key_node.Scalar();
    if (!seen.insert(key_node.Scalar()).second) input_error(at, "duplicate key '" + key + "'");
    if (const Field* f = find_field(key)) {
      set_from_node(*f, cfg, value, at);
      origins[key] = at;
    } else if (is_section(key)) {
      if (value.IsMap()) walk(value, key + ".", cfg, file, origins);
      else if (!value.IsNull())
        input_error(at, "'" + key + "' is a section: expected a mapping of its keys, got " +
                            (value.IsSequence() ? std::string("a list") : "'" + value.Scalar() + "'"));
    } else {
      unknown_key(key, at);
    }
  }
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

void apply_override_impl(RunConfig& cfg, const std::string& kv, Origins* origins) {
  if (text::unicode::find_invalid_utf8(kv) != std::string::npos)
    input_error("override", "invalid UTF-8 in '" + text::unicode::to_valid_utf8(kv) + "'");
  const std::string where = "override '" + kv + "'";
  const size_t eq = kv.find('=');
  if (eq == std::string::npos) input_error(where, "expected key=value (e.g. optim.lr=3e-5)");
  const std::string key = trim(kv.substr(0, eq));
  const std::string text = trim(kv.substr(eq + 1));
  const Field* f = find_field(key);
  if (!f) {
    if (is_section(key)) input_error(where, "'" + key + "' is a section: set one of its keys, e.g. " + key + "." +
                                                leaf_of(std::find_if(fields().begin(), fields().end(), [&](const Field& g) {
                                                          return g.name.rfind(key + ".", 0) == 0;
                                                        })->name));
    unknown_key(key, where);
  }
  // Strings are taken verbatim (paths, templates) unless quoted; everything else is read
  // as a YAML flow value so that lists look the same as in the file: [q_proj, v_proj].
  YAML::Node node;
  const bool quoted = !text.empty() && (text[0] == '"' || text[0] == '\'');
  if (std::holds_alternative<std::string*>(f->ref(cfg)) && !quoted) {
    node = YAML::Node(text);
  } else {
    try {
      node = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      input_error(where, "cannot read the value: " + e.msg);
    }
  }
  const loss::ConstraintKind kind_before = cfg.objective.constraint;
  set_from_node(*f, cfg, node, where);
  if (origins) (*origins)[key] = where;
  // Without a record of what was set (an override on a config in memory), a temperature
  // or reference mix still at the previous constraint's default is taken as unset and
  // follows the new constraint's (parse_impl applies them by origin instead).
  if (!origins && key == "objective.constraint") {
    const loss::ConstraintDescriptor &was = loss::descriptor_of(kind_before),
                                     &now = loss::descriptor_of(cfg.objective.constraint);
    ObjectiveConfig& o = cfg.objective;
    if (o.temperature == was.default_temperature) o.temperature = now.default_temperature;
    if (o.reference_mix == was.default_reference_mix)
      o.reference_mix = now.default_reference_mix;
  }
}

// Where each key's value came from (a file line, an override), for error messages.
using WhereOf = std::function<std::string(const std::string&)>;

// Each field on its own: ranges, required strings, list items among the field's names.
void check_field_values(RunConfig& cfg, const WhereOf& at) {
  for (const Field& f : fields()) {
    const Ref ref = f.ref(cfg);
    const std::string where = at(f.name);
    double number = 0;
    bool is_number = false;
    if (auto* i = std::get_if<int64_t*>(&ref)) number = static_cast<double>(**i), is_number = true;
    if (auto* d = std::get_if<double*>(&ref)) number = **d, is_number = true;
    if (is_number) {
      const std::string shown = value_text(ref);
      if (f.lo && (f.lo->open ? !(number > f.lo->value) : !(number >= f.lo->value)))
        input_error(where, f.name + " = " + shown + " must be " + (f.lo->open ? "> " : ">= ") + format_double(f.lo->value));
      if (f.hi && (f.hi->open ? !(number < f.hi->value) : !(number <= f.hi->value)))
        input_error(where, f.name + " = " + shown + " must be " + (f.hi->open ? "< " : "<= ") + format_double(f.hi->value));
    }
    if (auto* s = std::get_if<std::string*>(&ref)) {
      if (f.required && (*s)->empty())
        input_error(where, f.name + " is required (set it in the YAML or as " + f.name + "=...)");
    }
    if (auto* l = std::get_if<std::vector<std::string>*>(&ref)) {
      std::set<std::string> seen;
      for (const std::string& item : **l) {
        if (!f.one_of.empty() && std::find(f.one_of.begin(), f.one_of.end(), item) == f.one_of.end()) {
          const std::string near = closest(item, f.one_of);
          input_error(where, f.name + ": unknown name '" + item + "'" + (near.empty() ? "" : " (did you mean '" + near + "'?)") +
                                 "; valid: " + choices_text(f));
        }
        if (!seen.insert(item).second) input_error(where, f.name + " lists '" + item + "' twice");
      }
    }
  }

}

// The objective's rules: stated here alone; the trainer, `bench step` and `ref-cache` rely on them.
void check_objective(const RunConfig& cfg, const WhereOf& at) {
  const ObjectiveConfig& o = cfg.objective;
  const std::string& kind = loss::name_of(o.constraint);
  const loss::ConstraintDescriptor& desc = loss::descriptor_of(o.constraint);
  const bool by_mass = o.constraint != loss::ConstraintKind::none && loss::needs_reference_mass(o.positions);
  if ((desc.needs_tokens || by_mass) && o.tokens.empty())
    input_error(at("objective.constraint"), "objective.constraint = " + kind +
                                                (by_mass ? " with positions = " + loss::name_of(o.positions) : "") +
                                                " needs objective.tokens (tokens.json from `safetune tokens`)");
  if (o.reference == ReferenceKind::adapter_off && !cfg.lora.enabled)
    input_error(at("objective.reference"), "objective.reference = adapter_off needs LoRA (lora.enabled=true); use copy");
  if (o.reference == ReferenceKind::cache && o.ref_cache.empty())
    input_error(at("objective.reference"), "objective.reference = cache needs objective.ref_cache (from `safetune ref-cache`)");
  if (o.reference == ReferenceKind::cache && o.constraint != loss::ConstraintKind::none && !desc.cacheable)
    input_error(at("objective.reference"), "objective.constraint = " + kind +
                                               " needs the reference's logits over the whole vocabulary, which a "
                                               "reference cache does not hold; use adapter_off or copy");
}

// Evaluation during training: something to evaluate on, and rules on metrics it gives.
void check_evaluation(const RunConfig& cfg, const WhereOf& at) {
  const ObjectiveConfig& o = cfg.objective;
  const TrainConfig& tr = cfg.train;
  const bool evaluating = tr.eval_every > 0;
  if (evaluating && cfg.data.eval.empty() && tr.eval_suite.empty())
    input_error(at("train.eval_every"), "train.eval_every = " + std::to_string(tr.eval_every) +
                                            " needs held-out records (data.eval) or a suite (train.eval_suite)");
  if (!tr.eval_suite.empty() && !evaluating)
    input_error(at("train.eval_suite"), "train.eval_suite is set but train.eval_every = 0: set train.eval_every > 0 "
                                        "(optimizer steps between evaluations)");
  auto check_source = [&](const std::string& key, const std::vector<std::string>& metrics) {
    if (!evaluating) input_error(at(key), key + " needs evaluations: set train.eval_every > 0");
    for (const std::string& m : metrics) {
      if (metric_needs_suite(m) && tr.eval_suite.empty())
        input_error(at(key), key + ": metric '" + m + "' comes from a suite: set train.eval_suite");
      if (!metric_needs_suite(m) && cfg.data.eval.empty())
        input_error(at(key), key + ": metric '" + m + "' comes from held-out records: set data.eval");
      if (m == "val_constraint" && o.constraint == loss::ConstraintKind::none)
        input_error(at(key), key + ": metric 'val_constraint' needs a constraint (objective.constraint)");
      if (m == "margin" && (tr.eval_refusal_start.empty() || tr.eval_compliance_start.empty()))
        input_error(at(key), key + ": metric 'margin' needs train.eval_refusal_start and train.eval_compliance_start");
    }
  };
  if (evaluating && !cfg.data.eval.empty() && o.constraint != loss::ConstraintKind::none &&
      o.reference == ReferenceKind::cache)
    input_error(at("data.eval"), "data.eval with objective.reference = cache: the cache holds the training examples' "
                                 "reference only, not the held-out ones'; use adapter_off or copy");
  if (auto best = parse_keep_best(tr.keep_best, at("train.keep_best"))) check_source("train.keep_best", best->metrics);
  if (auto stop = parse_early_stop(tr.early_stop, at("train.early_stop"))) check_source("train.early_stop", {stop->metric});
}

void validate_impl(const RunConfig& cfg_in, const std::string& default_where, const Origins& origins) {
  RunConfig cfg = cfg_in;  // accessors take a mutable config; nothing is written
  const WhereOf at = [&](const std::string& key) {
    auto it = origins.find(key);
    return it != origins.end() ? it->second : default_where;
  };
  check_field_values(cfg, at);
  // Checks that involve several fields.
  if (cfg.lora.enabled && cfg.lora.target_modules.empty())
    input_error(at("lora.target_modules"), "lora.target_modules is empty: name at least one module, or set lora.enabled=false");
  if (cfg.data.harmful_fraction > 0 && cfg.data.harmful.empty())
    input_error(at("data.harmful_fraction"), "data.harmful_fraction > 0 needs data.harmful (harmful records)");
  check_objective(cfg, at);
  // Syntax only: whether a GPU is there is checked when the run starts (core/device.h).
  if (!is_device_name(cfg.train.device))
    input_error(at("train.device"), "train.device = '" + cfg.train.device + "' is not one of: cpu, cuda, cuda:N, auto");
  if (cfg.train.resume == Resume::latest && cfg.train.overwrite)
    input_error(at("train.overwrite"), "train.resume = auto and train.overwrite = true contradict each other");
  check_evaluation(cfg, at);
  // A config may come from someone else: its run directory must not climb out of where it
  // says it is (an absolute path states plainly where it goes).
  for (const auto& part : std::filesystem::path(cfg.train.output_dir))
    if (part == "..")
      input_error(at("train.output_dir"), "train.output_dir = '" + cfg.train.output_dir +
                                              "' contains '..'; name the run directory without it (or give an "
                                              "absolute path)");
}

RunConfig parse_impl(const std::string& text, const std::string& where, const std::vector<std::string>& overrides) {
  RunConfig cfg;
  Origins origins;
  // YAML is Unicode text; yaml-cpp passes invalid bytes through into strings that its
  // own emitter then cannot write back faithfully (config.resolved.yaml would differ).
  if (const size_t bad = text::unicode::find_invalid_utf8(text); bad != std::string::npos)
    input_error(where + ":" + std::to_string(std::count(text.begin(), text.begin() + bad, '\n') + 1),
                "invalid UTF-8 (byte offset " + std::to_string(bad) + ")");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    input_error(where_of(where, e.mark), "YAML syntax error: " + e.msg);
  }
  if (root.IsMap()) walk(root, "", cfg, where, origins);
  else if (!root.IsNull()) input_error(where, "expected a mapping of sections (model:, data:, lora:, ...) at the top level");
  for (const std::string& kv : overrides) apply_override_impl(cfg, kv, &origins);
  // The constraint's own defaults for what the file and the overrides leave unset.
  const loss::ConstraintDescriptor& desc = loss::descriptor_of(cfg.objective.constraint);
  if (!origins.count("objective.temperature")) cfg.objective.temperature = desc.default_temperature;
  if (!origins.count("objective.reference_mix")) cfg.objective.reference_mix = desc.default_reference_mix;
  validate_impl(cfg, where, origins);
  return cfg;
}

void emit_level(YAML::Emitter& out, RunConfig& cfg, const std::string& prefix) {
  std::set<std::string> done;
  for (const Field& f : fields()) {
    if (f.name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = f.name.substr(prefix.size());
    const size_t dot = rest.find('.');
    if (dot != std::string::npos) {
      const std::string sub = rest.substr(0, dot);
      if (!done.insert(sub).second) continue;
      out << YAML::Key << sub << YAML::Value << YAML::BeginMap;
      emit_level(out, cfg, prefix + sub + ".");
      out << YAML::EndMap;
      continue;
    }
    out << YAML::Key << rest << YAML::Value;
    const Ref ref = f.ref(cfg);
    if (auto* s = std::get_if<std::string*>(&ref)) {
      out << YAML::DoubleQuoted << **s;  // paths and free text: quoted, whatever they hold
    } else if (auto* d = std::get_if<double*>(&ref)) {
      std::string text = format_double(**d);
      // A dot in every float (1.0, 3.0e-05) so YAML 1.1 readers such as PyYAML see a float too.
      if (text.find('.') == std::string::npos) {
        const size_t e = text.find('e');
        text.insert(e == std::string::npos ? text.size() : e, ".0");
      }
      out << text;
    } else if (auto* c = std::get_if<Choice>(&ref)) {
      out << c->name();
    } else if (auto* m = std::get_if<data::ColumnMap*>(&ref)) {
      out << YAML::Flow << YAML::BeginMap;
      for (const auto& [field, column] : **m) out << YAML::Key << field << YAML::Value << YAML::DoubleQuoted << column;
      out << YAML::EndMap;
    } else if (auto* l = std::get_if<std::vector<std::string>*>(&ref)) {
      out << YAML::Flow << YAML::BeginSeq;
      for (const std::string& item : **l) out << YAML::DoubleQuoted << item;
      out << YAML::EndSeq;
    } else {
      out << value_text(ref);
    }
    out << YAML::Comment(f.doc);
  }
}

}  // namespace


RunConfig parse_run_config(const std::string& yaml_text, const std::string& where,
                           const std::vector<std::string>& overrides) {
  return parse_impl(yaml_text, where, overrides);
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_impl(read_file(path), path, overrides);
}

void apply_override(RunConfig& cfg, const std::string& key_equals_value) {
  apply_override_impl(cfg, key_equals_value, nullptr);
}

void validate(const RunConfig& cfg, const std::string& where) { validate_impl(cfg, where, {}); }

std::string to_yaml(const RunConfig& cfg_in) {
  RunConfig cfg = cfg_in;
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::set<std::string> done;
  for (const Field& f : fields()) {
    const std::string top = f.name.substr(0, f.name.find('.'));
    if (!done.insert(top).second) continue;
    out << YAML::Key << top << YAML::Value << YAML::BeginMap;
    emit_level(out, cfg, top + ".");
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  return "# Resolved run configuration: every field, defaults filled in.\n" + std::string(out.c_str()) + "\n";
}

bool same_config(const RunConfig& a_in, const RunConfig& b_in) {
  RunConfig a = a_in, b = b_in;
  for (const Field& f : fields()) {
    const Ref ra = f.ref(a), rb = f.ref(b);
    const bool same = std::visit(
        [&](const auto& pa) {
          using P = std::decay_t<decltype(pa)>;
          const P& pb = std::get<P>(rb);
          if constexpr (std::is_same_v<P, Choice>) return pa.get(pa.p) == pb.get(pb.p);
          else return *pa == *pb;
        },
        ra);
    if (!same) return false;
  }
  return true;
}

std::string suggest_key(const std::string& key) {
  // Score each valid name (and its aliases, placed in its section) by the smaller of the
  // whole-name distance and the last-component distance (+1 when the sections differ),
  // so that both "optim.learnig_rate" and a bare "lr" find optim.lr.
  const std::string key_leaf = leaf_of(key), key_section = section_of(key);
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const Field& f : fields()) {
    std::vector<std::string> leaves = f.aliases;
    leaves.push_back(leaf_of(f.name));
    const std::string section = section_of(f.name);
    for (const std::string& leaf : leaves) {
      const std::string full = section + "." + leaf;
      const size_t d = std::min(edit_distance(key, full),
                                edit_distance(key_leaf, leaf) + (key_section == section ? 0 : 1));
      if (d < best_d) best_d = d, best = f.name;
    }
  }
  return best_d <= std::max<size_t>(2, key_leaf.size() / 3) ? best : "";
}

std::string config_reference() {
  RunConfig defaults;
  std::ostringstream s;
  for (const Field& f : fields()) {
    const Ref ref = f.ref(defaults);
    s << f.name << " (" << kTypeNames[ref.index()] << ", default " << value_text(ref) << ")";
    if (!f.one_of.empty()) {
      s << " one of:";
      for (const std::string& c : f.one_of) s << " " << c;
    }
    s << "\n    " << f.doc << "\n";
  }
  return s.str();
}

}  // namespace safetune::train
