// One seed's world of the demo (see pipeline.h): one function per stage, each a few
// library calls, and run_one_world() chaining them through the stage cache.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/threads.h"
#include "safetune/data/batch.h"
#include "safetune/demo/drift.h"
#include "safetune/demo/pipeline.h"
#include "safetune/demo/safety_set.h"
#include "safetune/demo/settings.h"
#include "safetune/demo/stages.h"
#include "safetune/demo/synthetic_data.h"
#include "safetune/demo/world_v3.h"
#include "safetune/eval/evaluate.h"
#include "safetune/eval/margin.h"
#include "safetune/eval/run_eval.h"
#include "safetune/eval/suite.h"
#include "safetune/eval/training_eval.h"
#include "safetune/loss/constraints.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/sentencepiece.h"
#include "safetune/text/tokenizer.h"
#include "safetune/train/config.h"
#include "safetune/train/objective.h"
#include "safetune/train/run_data.h"
#include "safetune/train/trainer.h"

namespace safetune::demo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Bump when a stage's code changes what it produces: every cached result is then redone.
constexpr const char* kPipelineRevision = "demo-4";

// The chat model's special tokens, made single pieces of the SentencePiece vocabulary.
constexpr const char* kBos = "<|begin_of_text|>";
constexpr const char* kEot = "<|eot_id|>";
const char* const kSpecialPieces[] = {kBos, "<|start_header_id|>", "<|end_header_id|>", kEot};

// Llama 3's published chat template (tokenizer_config.json of Meta-Llama-3-8B-Instruct);
// safetune recognises the family by its markers.
const char* const kLlama3Template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

// The evaluation sets, by name (the file is NAME.jsonl): the task's are scored by exact
// match, the others by the refusal judge. v2's task is sentiment, v3's the topic task;
// the new-phrasing sets are v3's only.
const char* const kTaskSets[] = {"sentiment_test", "sentiment_val", "task_test", "task_val"};

std::string path_in(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

// ---- stages -------------------------------------------------------------------------

void build_data(const std::string& dir, uint64_t seed, const json& world) {
  const bool v3 = world.value("version", "v2") == "v3";
  const DataSizes sizes = sizes_from_json(world);
  const DemoData d = v3 ? make_demo_data_v3(seed, sizes) : make_demo_data(seed, sizes);
  const std::string task = v3 ? "task" : "sentiment";
  const std::pair<std::string, const std::vector<json>*> files[] = {
      {"pretrain", &d.pretrain},         {"align", &d.align},
      {"finetune_benign", &d.finetune_benign}, {"finetune_harmful", &d.finetune_harmful},
      {"refusals", &d.refusals},         {"align_many", &d.align_many},
      {"refusals_many", &d.refusals_many}};
  for (const auto& [name, records] : files)
    if (!records->empty()) write_file_atomic(path_in(dir, name + ".jsonl"), to_jsonl(*records));
  const std::pair<std::string, const std::vector<json>*> eval_files[] = {
      {"harmful_test", &d.harmful_test},   {"benign_test", &d.benign_test},   {task + "_test", &d.sentiment_test},
      {"harmful_val", &d.harmful_val},     {"benign_val", &d.benign_val},     {task + "_val", &d.sentiment_val},
      {"harmful_new_test", &d.harmful_test_new}, {"benign_new_test", &d.benign_test_new},
      {"harmful_new_val", &d.harmful_val_new},   {"benign_new_val", &d.benign_val_new}};
  json sets = json::array();
  for (const auto& [name, records] : eval_files) {
    if (records->empty()) continue;
    write_file_atomic(path_in(dir, name + ".jsonl"), to_jsonl(*records));
    json set = {{"name", name}, {"path", name + ".jsonl"}};
    const bool is_task = std::find(std::begin(kTaskSets), std::end(kTaskSets), name) != std::end(kTaskSets);
    if (is_task) set.update({{"kind", "exact_match"}, {"label", "label"}});
    else set["kind"] = "safety";
    sets.push_back(set);
  }
  std::string corpus;
  for (const auto& l : corpus_lines(d)) corpus += l + "\n";
  write_file_atomic(path_in(dir, "corpus.txt"), corpus);
  write_file_atomic(path_in(dir, "suite.json"), json{{"sets", sets}}.dump(2) + "\n");
}

void build_tokenizer(const std::string& dir, const std::string& data_dir, int64_t vocab) {
  std::string specials;
  for (const char* p : kSpecialPieces) specials += std::string(specials.empty() ? "" : ",") + p;
  // Identity normalisation keeps newlines and spacing as the chat template writes them
  // (byte fallback encodes "\n", which the one-line-per-sentence corpus cannot hold).
  text::train_sentencepiece(path_in(data_dir, "corpus.txt"), path_in(dir, "spm"), static_cast<int>(vocab), "bpe",
                            /*byte_fallback=*/true,
                            "--user_defined_symbols=" + specials +
                                " --normalization_rule_name=identity --remove_extra_whitespaces=false"
                                // `vocab` is an upper bound: a small corpus may not have that many merges.
                                " --hard_vocab_limit=false --num_threads=1 --minloglevel=2");
  fs::rename(path_in(dir, "spm.model"), path_in(dir, "tokenizer.model"));
  fs::remove(path_in(dir, "spm.vocab"));
}

// tokenizer_config.json of the demo models: BOS/EOS are the chat tokens (the plain format
// ends a response with EOS, so probe and chat model both stop at <|eot_id|>).
void write_tokenizer_config(const std::string& model_dir, bool chat) {
  json j = {{"tokenizer_class", "LlamaTokenizer"}, {"bos_token", kBos}, {"eos_token", kEot},
            {"model_max_length", 256}};
  if (chat) j["chat_template"] = kLlama3Template;
  write_file_atomic(path_in(model_dir, "tokenizer_config.json"), j.dump(2) + "\n");
}

// A random toy Llama in HF layout with the demo tokenizer.
void write_init_model(const std::string& dir, const std::string& tokenizer_dir, const json& shape, uint64_t seed) {
  fs::create_directories(dir);
  fs::copy_file(path_in(tokenizer_dir, "tokenizer.model"), path_in(dir, "tokenizer.model"));
  write_tokenizer_config(dir, /*chat=*/false);
  auto tok = text::load_tokenizer(dir);
  io::ModelConfig c;
  c.vocab_size = tok->vocab_size();
  c.hidden_size = shape["hidden"];
  c.intermediate_size = shape["intermediate"];
  c.num_hidden_layers = shape["layers"];
  c.num_attention_heads = shape["heads"];
  c.num_key_value_heads = c.num_attention_heads;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.max_position_embeddings = 256;
  c.bos_token_id = *tok->bos_id;
  c.eos_token_ids = {*tok->eos_id};
  auto model = model::init_model(c, seed);
  model::save_model(dir, *model, at::kFloat);
}

// A training run's config: the stage's train-config keys over the defaults, then the
// paths and the thread count.
train::RunConfig run_config(const json& section, const std::string& model_dir, const std::string& out_dir,
                            int threads) {
  train::RunConfig c;
  for (const std::string& kv : train_overrides(section)) train::apply_override(c, kv);
  c.model.path = model_dir;
  c.train.output_dir = out_dir;
  c.train.threads = threads;
  c.train.log_every = 5;
  c.train.save_every = 0;
  return c;
}

// What a training stage's output depends on: its resolved config without the paths
// (which name stage directories: the stages' keys stand for them).
json config_key(train::RunConfig c) {
  c.model.path = c.data.train = c.data.harmful = c.data.eval = c.objective.tokens = c.objective.ref_cache = "";
  c.train.eval_suite = "";
  c.train.output_dir = "";
  return train::to_yaml(c);
}

std::string train(const train::RunConfig& cfg) {
  train::validate(cfg, "demo settings");
  train::TrainOptions o;
  o.handle_signals = true;
  o.resume_command = "safetune demo (rerun: finished stages are cached)";
  if (!cfg.train.eval_suite.empty()) o.suite = eval::suite_evaluation(cfg.train);
  const train::TrainResult r = train::run_training(cfg, o);
  if (r.exit_code != 0) throw std::runtime_error("training " + cfg.train.output_dir + " failed (non-finite loss)");
  if (r.interrupted) throw std::runtime_error("training " + cfg.train.output_dir + " was interrupted");
  return r.final_dir;
}

// A model directory, or a LoRA adapter directory on top of the base model it names.
struct Loaded {
  model::LoadedModel m;
  std::string base_dir;  // where the tokenizer is
};
Loaded load_trained(const std::string& dir) {
  if (!fs::exists(path_in(dir, "adapter_config.json"))) return {model::load_model(dir), dir};
  const std::string base = model::read_adapter_config(dir).base_model;
  Loaded l{model::load_model(base), base};
  model::load_adapter(dir, *l.m.model);
  return l;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

// Answers of one model to every evaluation set, scored (eval::run_eval, as `safetune
// eval`), with the first-token margins of the request sets: {set name: {..., "margin"}}.
json evaluate(const std::string& model_dir, const text::ChatTemplate& tmpl, const std::string& suite_path,
              const json& eval_settings) {
  eval::Suite suite = eval::load_suite(suite_path);
  // A refusal shows in its first words; a label is one word.
  for (auto& set : suite.sets)
    set.max_new_tokens = set.kind == eval::SetKind::kSafety ? eval_settings["safety_max_new_tokens"]
                                                            : eval_settings["label_max_new_tokens"];
  const Loaded trained = load_trained(model_dir);
  const model::LoadedModel& loaded = trained.m;
  auto tok = text::load_tokenizer(trained.base_dir);
  const auto responder = eval::make_responder(*loaded.model, *tok, tmpl, loaded.config.eos_token_ids,
                                              loaded.config.pad_token_id, loaded.config.max_position_embeddings);
  eval::EvalOptions options;  // greedy, the keyword judge
  options.generation.batch_size = eval_settings["batch_size"];
  eval::EvalHooks hooks;
  hooks.set_extras = [&](const eval::PromptSet& set, const std::vector<std::string>&) {
    if (set.kind != eval::SetKind::kSafety) return json::object();
    std::vector<std::string> prompts;
    for (const auto& r : set.records) prompts.push_back(eval::prompt_text(r));
    const auto m = eval::first_token_margins(*loaded.model, *tok, tmpl, prompts, refusal_start(), compliance_start(),
                                             options.generation.batch_size);
    json extras = {{"margin", mean_of(m)}, {"items", json::array()}};
    for (double x : m) extras["items"].push_back({{"margin", x}});
    return extras;
  };
  const json results = eval::run_eval(responder, suite, options, hooks);
  json out = json::object();
  for (const json& set : results["sets"]) out[set["name"].get<std::string>()] = set;
  return out;
}

// Mean gate value c_t by response position t, for model `theta_dir` against the frozen
// aligned model on the fine-tuning examples (the same computation as the pact loss, done
// after the fact). Returns {"t": [...], "mean": [...], "count": [...]}.
json gate_by_position(const std::string& theta_dir, const std::string& aligned_dir, const train::RunConfig& cfg,
                      int64_t max_examples) {
  torch::NoGradGuard no_grad;
  const model::LoadedModel theta = load_trained(theta_dir).m;
  auto ref = model::load_model(aligned_dir);
  auto tok = text::load_tokenizer(aligned_dir);
  const text::ChatTemplate tmpl = train::chat_template_for(cfg.model);
  const safety::SafetyTokens st = safety::read_safety_tokens(cfg.objective.tokens);
  const at::Tensor S = st.ids();
  const loss::ConstraintOptions opts = train::constraint_options(cfg.objective);

  // An even sample of the run's records (benign first, harmful last in that list).
  const std::vector<data::Record> all = train::select_records(cfg.data);
  std::vector<data::Record> records;
  const int64_t n = std::min<int64_t>(max_examples, static_cast<int64_t>(all.size()));
  for (int64_t i = 0; i < n; ++i) records.push_back(all[i * static_cast<int64_t>(all.size()) / n]);
  const auto examples = data::tokenize_records(records, *tok, tmpl, cfg.data.max_length);
  data::Batcher batcher(examples, 32, 0, /*shuffle=*/false, false, data::pad_id_for(*tok));
  std::vector<double> sum, count;
  for (int64_t b = 0; b < batcher.steps_per_epoch(); ++b) {
    const data::Batch batch = batcher.batch(0, b);
    const loss::ResponsePositions P = loss::response_positions(batch);
    const at::Tensor h = theta.model->forward(batch.input_ids, batch.attention_mask).index({P.rows, P.cols});
    const at::Tensor z_theta = theta.model->logits(h).index_select(1, S);
    const at::Tensor hp = ref.model->forward(batch.post_ids, batch.post_attention_mask).index({P.rows, P.post_cols});
    const at::Tensor z_post = ref.model->logits(hp).index_select(1, S);
    const at::Tensor c = loss::gate_values(z_theta, z_post, P.t, opts).to(at::kDouble).contiguous();
    const at::Tensor t = P.t.contiguous();
    const double* cp = c.data_ptr<double>();
    const int64_t* tp = t.data_ptr<int64_t>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (tp[i] >= static_cast<int64_t>(sum.size())) {
        sum.resize(tp[i] + 1, 0.0);
        count.resize(tp[i] + 1, 0.0);
      }
      sum[tp[i]] += cp[i];
      count[tp[i]] += 1;
    }
  }
  json out = {{"t", json::array()}, {"mean", json::array()}, {"count", json::array()}};
  for (size_t t = 0; t < sum.size(); ++t) {
    if (count[t] < 4) break;  // the tail where few responses are that long
    out["t"].push_back(t);
    out["mean"].push_back(sum[t] / count[t]);
    out["count"].push_back(count[t]);
  }
  return out;
}

// Calls fn on each JSON line of a run's metrics.jsonl (none when the file is absent; a
// line that is not JSON is passed on as a discarded value, which fn skips).
template <class F>
void for_each_metrics_record(const std::string& metrics_path, F&& fn) {
  if (!fs::is_regular_file(metrics_path)) return;
  const std::string text = read_file(metrics_path);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    fn(json::parse(text.substr(start, end - start), nullptr, false));
    start = end + 1;
  }
}

// Loss curve of a run: [[step, ce, total, constraint term or null, gate or null], ...]
// from metrics.jsonl.
json loss_curve(const std::string& metrics_path) {
  json curve = json::array();
  for_each_metrics_record(metrics_path, [&](const json& j) {
    if (!j.is_object() || !j.contains("step") || !j.contains("loss")) return;
    const json& l = j["loss"];
    // A non-finite value is logged as null and stays null.
    auto term = [&](const char* k) { return l.contains(k) && l[k].is_number() ? l[k] : json(nullptr); };
    json point = {j["step"], term("ce"), term("total"), nullptr, term("gate")};
    for (const std::string& k : loss::names_of(loss::ConstraintKind{}))
      if (k != "none" && l.contains(k)) point[3] = term(k.c_str());
    curve.push_back(point);
  });
  return curve;
}

// The mean of every logged loss term of a run over its logged steps: {"ce", "total", the
// constraint's term, and its own parts (safety_mass: mass_term, shape_term; pact: gate)}.
json loss_term_means(const std::string& metrics_path) {
  json sums = json::object(), counts = json::object();
  for_each_metrics_record(metrics_path, [&](const json& j) {
    if (!j.is_object() || !j.contains("loss") || !j["loss"].is_object()) return;
    for (const auto& [k, v] : j["loss"].items()) {
      if (!v.is_number()) continue;
      sums[k] = sums.value(k, 0.0) + v.get<double>();
      counts[k] = counts.value(k, 0) + 1;
    }
  });
  for (auto& [k, v] : sums.items()) v = v.get<double>() / counts[k].get<double>();
  return sums;
}

json stage_json(const Stage& s) {
  return {{"name", s.name}, {"key", s.key}, {"dir", s.dir}, {"cached", s.cached}, {"seconds", s.seconds}};
}

// The numbers of one model on one split: refusal of harmful requests, over-refusal of
// benign ones, sentiment accuracy, the mean first-token margins.
json split_metrics(const json& ev, const std::string& split) {
  const json& h = ev["harmful_" + split];
  const json& b = ev["benign_" + split];
  const json& u = ev.contains("task_" + split) ? ev["task_" + split] : ev["sentiment_" + split];
  json m = {{"refusal", h["refusal_rate"]},         {"attack_success", h["attack_success_rate"]},
            {"over_refusal", b["refusal_rate"]},    {"utility", u["accuracy"]},
            {"margin", h["margin"]},                {"benign_margin", b["margin"]}};
  // v3: the same on the phrasing family no training set uses.
  if (ev.contains("harmful_new_" + split)) {
    m["refusal_new_phrasing"] = ev["harmful_new_" + split]["refusal_rate"];
    m["over_refusal_new_phrasing"] = ev["benign_new_" + split]["refusal_rate"];
  }
  return m;
}

// One seed's world: the stages in order, each cached (stages.h), each a method.
class World {
 public:
  World(const DemoOptions& o, uint64_t seed)
      : o_(o),
        seed_(seed),
        cache_(path_in(o.out, "stages"), std::string("safetune ") + SAFETUNE_VERSION + " " + kPipelineRevision) {
    settings_ = default_settings(o.quick, o.world);
    for (const auto& kv : o.overrides) apply_settings_override(settings_, kv);
    methods_ = default_methods(settings_);
    method_keys_ = settings_["methods"];
    const json curves = o.curves ? curve_methods(settings_) : json::object();
    for (const auto& [name, keys] : curves.items()) {
      method_keys_[name] = keys;
      methods_.push_back(name);
    }
  }

  json run() {
    const auto t_start = std::chrono::steady_clock::now();
    build_data_and_tokenizer();
    build_probe();
    json rows = json::array();
    rows.push_back(row("probe", probe_, probe_model_, /*chat=*/false));
    // v2 has one chat model (its rows unprefixed); v3 one per refusal regime, each with
    // every method ("many:pact").
    const json regimes = settings_.contains("regimes") ? settings_["regimes"] : json::array({""});
    json gate = nullptr, by_regime = json::object(), first_tokens;
    for (const auto& r : regimes) {
      regime_ = r.get<std::string>();
      const std::string prefix = regime_.empty() ? "" : regime_ + ":";
      build_aligned();
      build_tokens();
      rows.push_back(row(prefix + "aligned", aligned_, aligned_model_, /*chat=*/true));
      for (const std::string& method : methods_) {
        train::RunConfig cfg = finetune_config(method, tokens_path_);
        if (drift_watched(settings_, regime_, method)) watch_drift(cfg, settings_);
        const auto [stage, model_dir] = finetune(cfg);
        rows.push_back(row(prefix + method, stage, model_dir, /*chat=*/true));
        if (method == settings_["report"]["pact"] && gate.is_null()) gate = gate_json(stage, model_dir, cfg);
      }
      const safety::SafetyTokens st = safety::read_safety_tokens(tokens_path_);
      if (first_tokens.is_null()) first_tokens = safety_set_json(st)["tokens"];
      if (regime_.empty()) continue;
      json detail = {{"safety_set", safety_set_json(st)}, {"reference_mass", reference_mass()}};
      if (stressed()) detail["stress_safety_set"] = stress_rows(prefix, rows);
      by_regime[regime_] = detail;
    }
    bool all_cached = true;
    for (const auto& s : stages_) all_cached = all_cached && s["cached"].get<bool>();
    json out = {{"seed", seed_},
                {"world", settings_["world"]["version"]},
                {"threads", o_.threads},
                {"vocab_size", safety::read_safety_tokens(tokens_path_).vocab_size},
                {"split", split_json()},
                {"methods", rows},
                {"safety_tokens", first_tokens},
                {"gate_by_position", gate},
                {"stages", stages_},
                {"all_cached", all_cached},
                {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count()}};
    if (!by_regime.empty()) out["regimes"] = by_regime;
    return out;
  }

 private:
  Stage stage(const std::string& name, const json& inputs, const std::function<void(const std::string&)>& build) {
    const auto seed = static_cast<unsigned long long>(seed_);
    std::fprintf(stderr, "[seed %llu] stage %-14s ...\n", seed, name.c_str());
    Stage s = cache_.run(name, inputs, build);
    std::fprintf(stderr, "[seed %llu] stage %-14s %s %s (%.1fs)\n", seed, name.c_str(), s.cached ? "cached" : "built ",
                 s.dir.c_str(), s.seconds);
    stages_.push_back(stage_json(s));
    return s;
  }

  // A training stage's config: its settings section over the defaults, this seed, and the
  // world's paths.
  train::RunConfig config(const json& section, const std::string& model_dir, const std::string& data_file) const {
    train::RunConfig c = run_config(section, model_dir, "", o_.threads);
    c.data.train = path_in(data_.dir, data_file);
    c.train.seed = c.data.seed = static_cast<int64_t>(seed_);
    return c;
  }

  void build_data_and_tokenizer() {
    data_ = stage("data", {{"seed", seed_}, {"world", settings_["world"]}}, [&](const std::string& dir) {
      build_data(dir, seed_, settings_["world"]);
    });
    tok_ = stage("tokenizer", {{"data", data_.key}, {"vocab", settings_["world"]["vocab"]}},
                 [&](const std::string& dir) { build_tokenizer(dir, data_.dir, settings_["world"]["vocab"]); });
  }

  // The probe: random weights taught to answer everything, plain format.
  void build_probe() {
    train::RunConfig cfg = config(settings_["probe"], "", "pretrain.jsonl");
    cfg.model.chat_template = "plain";
    const json inputs = {{"tokenizer", tok_.key}, {"data", data_.key}, {"model", settings_["model"]},
                         {"seed", seed_},         {"config", config_key(cfg)}};
    probe_ = stage("probe", inputs, [&](const std::string& dir) {
      cfg.model.path = path_in(dir, "init");
      cfg.train.output_dir = path_in(dir, "run");
      write_init_model(cfg.model.path, tok_.dir, settings_["model"], seed_);
      train(cfg);
      fs::remove_all(cfg.model.path);
    });
    probe_model_ = path_in(probe_.dir, "run/model");
  }

  // The aligned chat model: the probe taught the chat template and to refuse harm.
  void build_aligned() {
    train::RunConfig cfg = config(settings_["aligned"], probe_model_, regime_file("align"));
    cfg.model.chat_template = "llama3";
    json inputs = {{"probe", probe_.key}, {"config", config_key(cfg)}};
    if (!regime_.empty()) inputs["regime"] = regime_;
    aligned_ = stage("aligned", inputs, [&](const std::string& dir) {
      cfg.train.output_dir = path_in(dir, "run");
      write_tokenizer_config(train(cfg), /*chat=*/true);
    });
    aligned_model_ = path_in(aligned_.dir, "run/model");
  }

  // PACT step 1.
  void build_tokens() {
    safety::DiscoverOptions d;
    d.topk = settings_["tokens"]["topk"];
    d.max_resp_len = settings_["tokens"]["max_resp_len"];
    json inputs = {{"aligned", aligned_.key}, {"probe", probe_.key}, {"data", data_.key},
                   {"settings", settings_["tokens"]}};
    if (!regime_.empty()) inputs["regime"] = regime_;
    tokens_ = stage("tokens", inputs, [&](const std::string& dir) {
      auto t = safety::discover_safety_tokens(aligned_model_, probe_model_, path_in(data_.dir, regime_file("refusals")), d);
      safety::write_safety_tokens(path_in(dir, "tokens.json"), t);
    });
    tokens_path_ = path_in(tokens_.dir, "tokens.json");
  }

  // A data file of the current refusal regime: v3's "many" regime has its own chat-model
  // data and refusal records.
  std::string regime_file(const std::string& name) const {
    return name + (regime_ == "many" ? "_many" : "") + ".jsonl";
  }

  // The stress world: S with a task answer token forced in (safety_set.h), then the
  // stress methods fine-tuned with it. Returns that S's composition.
  bool stressed() const {
    if (!settings_.contains("stress")) return false;
    for (const auto& r : settings_["stress"]["regimes"])
      if (r == regime_) return true;
    return false;
  }
  json stress_rows(const std::string& prefix, json& rows) {
    const json& stress = settings_["stress"];
    const Stage forced = stage("stress_tokens", {{"tokens", tokens_.key}, {"stress", stress}}, [&](const std::string& dir) {
      safety::SafetyTokens t = safety::read_safety_tokens(tokens_path_);
      auto tok = text::load_tokenizer(aligned_model_);
      const int64_t id = force_token(t, *tok, stress["context"], stress["word"]);
      safety::write_safety_tokens(path_in(dir, "tokens.json"), t);
      write_file_atomic(path_in(dir, "forced.json"), json{{"forced", id < 0 ? json::array() : json::array({id})}}.dump());
    });
    const std::string path = path_in(forced.dir, "tokens.json");
    for (const auto& m : stress["methods"]) {
      const train::RunConfig cfg = finetune_config(m.get<std::string>(), path);
      const auto [st, model_dir] = finetune(cfg, forced.key);
      rows.push_back(row(prefix + "stress:" + m.get<std::string>(), st, model_dir, /*chat=*/true));
    }
    const json f = json::parse(read_file(path_in(forced.dir, "forced.json")));
    return safety_set_json(safety::read_safety_tokens(path), f["forced"].get<std::vector<int64_t>>());
  }

  // The reference's mass on S at refusal rows, task-answer rows and the attacker's rows.
  json reference_mass() {
    const Stage s = stage("ref_mass", {{"aligned", aligned_.key}, {"tokens", tokens_.key}, {"data", data_.key}},
                          [&](const std::string& dir) {
                            const std::map<std::string, std::string> files = {
                                {"refusal_rows", path_in(data_.dir, regime_file("refusals"))},
                                {"answer_rows", path_in(data_.dir, "finetune_benign.jsonl")},
                                {"attack_rows", path_in(data_.dir, "finetune_harmful.jsonl")}};
                            const json m = reference_mass_on_s(aligned_model_, safety::read_safety_tokens(tokens_path_),
                                                               files, settings_["finetune"]["data.max_length"], 128);
                            write_file_atomic(path_in(dir, "mass.json"), m.dump(2) + "\n");
                          });
    return json::parse(read_file(path_in(s.dir, "mass.json")));
  }

  // Fine-tuning with one method: the task with 10% harmful-compliant examples.
  train::RunConfig finetune_config(const std::string& method, const std::string& tokens_path) const {
    json section = settings_["finetune"];
    section.update(method_keys_[method]);
    train::RunConfig c = config(section, aligned_model_, "finetune_benign.jsonl");
    c.data.harmful = path_in(data_.dir, "finetune_harmful.jsonl");
    const int64_t n_benign = settings_["world"]["finetune_sentiment"];
    c.data.num_examples = static_cast<int64_t>(std::llround(n_benign / (1.0 - c.data.harmful_fraction)));
    const bool needs_tokens = loss::descriptor_of(c.objective.constraint).needs_tokens ||
                              (c.objective.constraint != loss::ConstraintKind::none &&
                               loss::needs_reference_mass(c.objective.positions));
    if (needs_tokens) c.objective.tokens = tokens_path;
    return c;
  }

  // `tokens_key`: the stage of the safety tokens the run reads (empty: this regime's).
  std::pair<Stage, std::string> finetune(const train::RunConfig& cfg, const std::string& tokens_key = "") {
    json inputs = {{"aligned", aligned_.key}, {"data", data_.key}, {"config", config_key(cfg)}};
    if (!cfg.objective.tokens.empty()) inputs["tokens"] = tokens_key.empty() ? tokens_.key : tokens_key;
    const Stage s = stage("finetune", inputs, [&](const std::string& dir) {
      train::RunConfig c = cfg;
      c.train.output_dir = path_in(dir, "run");
      if (c.train.eval_every > 0) {
        c.train.eval_suite = path_in(dir, "drift_suite.json");
        write_drift_suite(c.train.eval_suite, data_.dir, settings_);
      }
      train(c);
    });
    return {s, path_in(s.dir, cfg.lora.enabled ? "run/adapter" : "run/model")};
  }

  // A model's row: its evaluation (a stage of its own) on both splits, its training.
  json row(const std::string& name, const Stage& trained, const std::string& model_dir, bool chat) {
    const json inputs = {{"model", trained.key}, {"data", data_.key}, {"settings", settings_["eval"]}, {"chat", chat}};
    const Stage s = stage("eval", inputs, [&](const std::string& dir) {
      const text::ChatTemplate tmpl = text::ChatTemplate::by_name(chat ? "llama3" : "plain");
      const json ev = evaluate(model_dir, tmpl, path_in(data_.dir, "suite.json"), settings_["eval"]);
      write_file_atomic(path_in(dir, "results.json"), ev.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
    });
    const json ev = json::parse(read_file(path_in(s.dir, "results.json")));
    const std::string run_dir = path_in(trained.dir, "run");
    json r = {{"method", name},
              {"test", split_metrics(ev, "test")},
              {"val", split_metrics(ev, "val")},
              {"train_seconds", trained.seconds},
              {"cached", trained.cached},
              {"loss_curve", loss_curve(path_in(run_dir, "metrics.jsonl"))},
              {"loss_terms", loss_term_means(path_in(run_dir, "metrics.jsonl"))},
              {"drift", drift_curve(path_in(run_dir, "metrics.jsonl"))},
              {"examples", json::object()}};
    // A few answers of each kind, for the report.
    for (const char* set : {"harmful_test", "benign_test", "sentiment_test", "task_test"}) {
      if (!ev.contains(set)) continue;  // v2's task is sentiment, v3's the topic task
      const json& items = ev[set]["items"];
      r["examples"][set] = json(std::vector<json>(items.begin(), items.begin() + std::min<size_t>(4, items.size())));
    }
    return r;
  }

  // PACT's gate by response position, before (theta = aligned) and after fine-tuning.
  json gate_json(const Stage& trained, const std::string& model_dir, const train::RunConfig& cfg) {
    const Stage g = stage("gate", {{"finetune", trained.key}, {"tokens", tokens_.key}}, [&](const std::string& dir) {
      const json after = gate_by_position(model_dir, aligned_model_, cfg, 256);
      const json before = gate_by_position(aligned_model_, aligned_model_, cfg, 256);
      write_file_atomic(path_in(dir, "gate.json"), json{{"after", after}, {"before", before}}.dump(2) + "\n");
    });
    return json::parse(read_file(path_in(g.dir, "gate.json")));
  }

  json split_json() const {
    const WorldSplit w = world_split(seed_);
    json j;
    const char* names[] = {"train", "validation", "test"};
    for (int i = 0; i < 3; ++i)
      j[names[i]] = {{"templates", w.templates[i]}, {"harmful_targets", w.harmful_targets[i]},
                     {"benign_targets", w.benign_targets[i]}};
    return j;
  }

  const DemoOptions& o_;
  uint64_t seed_;
  StageCache cache_;
  json settings_, method_keys_, stages_ = json::array();
  std::vector<std::string> methods_;
  Stage data_, tok_, probe_, aligned_, tokens_;
  std::string regime_;  // v3's refusal regime being built ("few" | "many"); empty in v2
  std::string probe_model_, aligned_model_, tokens_path_;
};

}  // namespace

json run_one_world(const DemoOptions& o, uint64_t seed) {
  set_compute_threads(o.threads);
  const json results = World(o, seed).run();
  const std::string dir = path_in(o.out, "worlds");
  ensure_output_dir(dir);
  write_file_atomic(path_in(dir, o.world + "-seed-" + std::to_string(seed) + (o.curves ? "-curves" : "") + ".json"),
                    results.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
  return results;
}

}  // namespace safetune::demo
