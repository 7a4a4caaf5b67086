// The demo pipeline (see pipeline.h): one function per stage, each a few library calls.
#include "safetune/demo/pipeline.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/threads.h"
#include "safetune/data/batch.h"
#include "safetune/demo/report.h"
#include "safetune/demo/stages.h"
#include "safetune/demo/synthetic_data.h"
#include "safetune/eval/evaluate.h"
#include "safetune/eval/suite.h"
#include "safetune/loss/constraints.h"
#include "safetune/model/load.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/sentencepiece.h"
#include "safetune/text/tokenizer.h"
#include "safetune/train/config.h"
#include "safetune/train/run_data.h"
#include "safetune/train/trainer.h"

namespace safetune::demo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Bump when a stage's code changes what it produces: every cached result is then redone.
constexpr const char* kPipelineRevision = "demo-2";

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

// Everything the two scales differ in.
struct Scale {
  DataSizes sizes;
  int64_t vocab = 1000;
  int64_t hidden = 96, layers = 2, heads = 4, intermediate = 256;
  int64_t probe_epochs = 5, align_epochs = 6, finetune_epochs = 6;
  int64_t batch = 16;
  double probe_lr = 3e-3, align_lr = 2e-3, finetune_lr = 2e-3;
  std::vector<std::string> methods = {"none", "kl_full", "pact", "anchor"};
};

Scale scale_for(bool quick) {
  Scale s;
  if (!quick) return s;
  s.sizes.pretrain_benign = 600;
  s.sizes.pretrain_harmful = 150;
  s.sizes.align_benign = 300;
  s.sizes.align_refusals = 150;
  s.sizes.refusals = 64;
  s.sizes.sentiment_train = 300;
  s.sizes.finetune_other = 100;
  s.sizes.finetune_harmful = 100;
  s.sizes.harmful_test = 60;
  s.sizes.sentiment_test = 120;
  s.vocab = 600;
  s.methods = {"none", "kl_full", "pact"};
  return s;
}

json sizes_json(const DataSizes& n) {
  return {{"pretrain_benign", n.pretrain_benign}, {"pretrain_harmful", n.pretrain_harmful},
          {"align_benign", n.align_benign},       {"align_refusals", n.align_refusals},
          {"refusals", n.refusals},               {"sentiment_train", n.sentiment_train},
          {"finetune_other", n.finetune_other},   {"finetune_harmful", n.finetune_harmful},
          {"harmful_test", n.harmful_test},       {"sentiment_test", n.sentiment_test}};
}

std::string path_in(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  write_file_atomic(path, s);
}

// ---- stages -------------------------------------------------------------------------

void build_data(const std::string& dir, uint64_t seed, const DataSizes& sizes) {
  const DemoData d = make_demo_data(seed, sizes);
  write_file_atomic(path_in(dir, "pretrain.jsonl"), to_jsonl(d.pretrain));
  write_file_atomic(path_in(dir, "align.jsonl"), to_jsonl(d.align));
  write_file_atomic(path_in(dir, "finetune_benign.jsonl"), to_jsonl(d.finetune_benign));
  write_file_atomic(path_in(dir, "finetune_harmful.jsonl"), to_jsonl(d.finetune_harmful));
  write_file_atomic(path_in(dir, "refusals.jsonl"), to_jsonl(d.refusals));
  write_file_atomic(path_in(dir, "harmful_test.jsonl"), to_jsonl(d.harmful_test));
  write_file_atomic(path_in(dir, "sentiment_test.jsonl"), to_jsonl(d.sentiment_test));
  write_lines(path_in(dir, "corpus.txt"), corpus_lines(d));
  const json suite = {{"sets",
                       {{{"name", "harmful_heldout"}, {"path", "harmful_test.jsonl"}, {"kind", "safety"}},
                        {{"name", "sentiment_test"},
                         {"path", "sentiment_test.jsonl"},
                         {"kind", "exact_match"},
                         {"label", "label"}}}}};
  write_file_atomic(path_in(dir, "suite.json"), suite.dump(2) + "\n");
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
                                " --hard_vocab_limit=false --num_threads=2 --minloglevel=2");
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

// A random tiny Llama in HF layout with the demo tokenizer.
void write_init_model(const std::string& dir, const std::string& tokenizer_dir, const Scale& sc, uint64_t seed) {
  fs::create_directories(dir);
  fs::copy_file(path_in(tokenizer_dir, "tokenizer.model"), path_in(dir, "tokenizer.model"));
  write_tokenizer_config(dir, /*chat=*/false);
  auto tok = text::load_tokenizer(dir);
  io::ModelConfig c;
  c.vocab_size = tok->vocab_size();
  c.hidden_size = sc.hidden;
  c.intermediate_size = sc.intermediate;
  c.num_hidden_layers = sc.layers;
  c.num_attention_heads = sc.heads;
  c.num_key_value_heads = sc.heads;
  c.head_dim = sc.hidden / sc.heads;
  c.max_position_embeddings = 256;
  c.bos_token_id = *tok->bos_id;
  c.eos_token_ids = {*tok->eos_id};
  auto model = model::init_model(c, seed);
  model::save_model(dir, *model, at::kFloat);
}

// The settings every demo run shares: full fine-tuning in fp32, cosine schedule.
train::RunConfig run_config(const std::string& model_dir, const std::string& out_dir, const Scale& sc, int threads) {
  train::RunConfig c;
  c.model.path = model_dir;
  c.model.dtype = "fp32";
  c.data.max_length = 96;
  c.lora.enabled = false;
  c.optim.weight_decay = 0.0;
  c.optim.grad_clip = 1.0;
  c.schedule.type = "cosine";
  c.schedule.warmup_steps = 10;
  c.train.output_dir = out_dir;
  c.train.batch_size = sc.batch;
  c.train.threads = threads;
  c.train.log_every = 5;
  c.train.save_every = 0;
  c.train.seed = 42;
  return c;
}

std::string train(const train::RunConfig& cfg) {
  train::TrainOptions o;
  o.handle_signals = true;
  o.resume_command = "safetune demo (rerun: finished stages are cached)";
  const train::TrainResult r = train::run_training(cfg, o);
  if (r.exit_code != 0) throw std::runtime_error("training " + cfg.train.output_dir + " failed (non-finite loss)");
  if (r.interrupted) throw std::runtime_error("training " + cfg.train.output_dir + " was interrupted");
  return r.final_dir;
}

// Answers of one model to the suite's sets, scored; {"harmful_heldout": ..., "sentiment_test": ...}.
json evaluate(const std::string& model_dir, const text::ChatTemplate& tmpl, const std::string& suite_path) {
  torch::NoGradGuard no_grad;
  const eval::Suite suite = eval::load_suite(suite_path);
  auto loaded = model::load_model(model_dir);
  auto tok = text::load_tokenizer(model_dir);
  const auto responder = eval::make_responder(*loaded.model, *tok, tmpl, loaded.config.eos_token_ids,
                                              loaded.config.pad_token_id, loaded.config.max_position_embeddings);
  json out = json::object();
  for (const auto& set : suite.sets) {
    eval::GenerationSettings g;  // greedy
    g.batch_size = 32;
    // A refusal shows in its first words; a label is one word.
    g.max_new_tokens = set.kind == eval::SetKind::kSafety ? 32 : 6;
    const auto responses = eval::respond(responder, set, g);
    out[set.name] = eval::score_set(set, responses, suite.refusal_keywords);
  }
  return out;
}

// Mean gate value c_t by response position t, for model `theta_dir` against the frozen
// aligned model on the fine-tuning examples (the same computation as the pact loss, done
// after the fact). Returns {"t": [...], "mean": [...], "count": [...]}.
json gate_by_position(const std::string& theta_dir, const std::string& aligned_dir, const train::RunConfig& cfg,
                      const std::string& tokens_path, int64_t max_examples) {
  torch::NoGradGuard no_grad;
  auto theta = model::load_model(theta_dir);
  auto ref = model::load_model(aligned_dir);
  auto tok = text::load_tokenizer(aligned_dir);
  const text::ChatTemplate tmpl = train::chat_template_for(cfg.model);
  const safety::SafetyTokens st = safety::read_safety_tokens(tokens_path);
  const at::Tensor S = st.ids();
  const loss::ConstraintOptions opts = loss::constraint_options(cfg.objective);

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

// Loss curve of a run: [[step, ce, total, constraint term or null], ...] from metrics.jsonl.
json loss_curve(const std::string& metrics_path) {
  json curve = json::array();
  if (!fs::is_regular_file(metrics_path)) return curve;
  const std::string text = read_file(metrics_path);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const auto j = json::parse(text.substr(start, end - start), nullptr, false);
    start = end + 1;
    if (!j.is_object() || !j.contains("step") || !j.contains("loss")) continue;
    const json& l = j["loss"];
    // A non-finite value is logged as null and stays null.
    auto term = [&](const char* k) { return l.contains(k) && l[k].is_number() ? l[k] : json(nullptr); };
    json point = {j["step"], term("ce"), term("total"), nullptr, term("gate")};
    for (const char* k : {"pact", "kl_full", "anchor"})
      if (l.contains(k)) point[3] = term(k);
    curve.push_back(point);
  }
  return curve;
}

void log_stage(const Stage& s) {
  if (s.cached)
    std::fprintf(stderr, "stage %-18s cached   %s (built in %.1fs)\n", s.name.c_str(), s.dir.c_str(), s.seconds);
  else
    std::fprintf(stderr, "stage %-18s built    %s in %.1fs\n", s.name.c_str(), s.dir.c_str(), s.seconds);
}

json stage_json(const Stage& s) {
  return {{"name", s.name}, {"key", s.key}, {"dir", s.dir}, {"cached", s.cached}, {"seconds", s.seconds}};
}

double rate(const json& set, const char* field) { return set.value(field, 0.0); }

}  // namespace

json run_demo(const DemoOptions& o) {
  const auto t_start = std::chrono::steady_clock::now();
  const int threads = set_compute_threads(o.threads);
  const Scale sc = scale_for(o.quick);
  ensure_output_dir(o.out);
  StageCache cache(path_in(o.out, "stages"), std::string("safetune ") + SAFETUNE_VERSION + " " + kPipelineRevision);
  json stages = json::array();
  auto run = [&](const std::string& name, const json& inputs, const std::function<void(const std::string&)>& build) {
    std::fprintf(stderr, "stage %-18s ...\n", name.c_str());
    Stage s = cache.run(name, inputs, build);
    log_stage(s);
    stages.push_back(stage_json(s));
    return s;
  };

  // Data and tokenizer.
  const Stage data = run("data", {{"seed", o.seed}, {"sizes", sizes_json(sc.sizes)}},
                         [&](const std::string& dir) { build_data(dir, o.seed, sc.sizes); });
  const Stage tok = run("tokenizer", {{"data", data.key}, {"vocab", sc.vocab}},
                        [&](const std::string& dir) { build_tokenizer(dir, data.dir, sc.vocab); });

  // The probe: random weights taught to answer everything, plain format.
  const json model_shape = {{"hidden", sc.hidden}, {"layers", sc.layers}, {"heads", sc.heads},
                            {"intermediate", sc.intermediate}};
  const json probe_opts = {{"tokenizer", tok.key}, {"data", data.key}, {"model", model_shape}, {"seed", o.seed},
                           {"epochs", sc.probe_epochs}, {"lr", sc.probe_lr}, {"batch", sc.batch}};
  const Stage probe = run("probe", probe_opts, [&](const std::string& dir) {
    const std::string init = path_in(dir, "init");
    write_init_model(init, tok.dir, sc, o.seed);
    train::RunConfig c = run_config(init, path_in(dir, "run"), sc, o.threads);
    c.model.chat_template = "plain";
    c.data.train = path_in(data.dir, "pretrain.jsonl");
    c.optim.lr = sc.probe_lr;
    c.train.epochs = sc.probe_epochs;
    train(c);
    fs::remove_all(init);
  });
  const std::string probe_model = path_in(probe.dir, "run/model");

  // The aligned chat model: the probe taught the chat template and to refuse harm.
  const Stage aligned = run("aligned", {{"probe", probe.key}, {"epochs", sc.align_epochs}, {"lr", sc.align_lr}},
                            [&](const std::string& dir) {
                              train::RunConfig c = run_config(probe_model, path_in(dir, "run"), sc, o.threads);
                              c.model.chat_template = "llama3";
                              c.data.train = path_in(data.dir, "align.jsonl");
                              c.optim.lr = sc.align_lr;
                              c.train.epochs = sc.align_epochs;
                              const std::string model_dir = train(c);
                              write_tokenizer_config(model_dir, /*chat=*/true);
                            });
  const std::string aligned_model = path_in(aligned.dir, "run/model");

  // PACT step 1.
  safety::DiscoverOptions dopt;
  dopt.topk = 32;
  dopt.max_resp_len = 32;
  const Stage tokens = run("tokens", {{"aligned", aligned.key}, {"topk", dopt.topk}, {"max_resp_len", dopt.max_resp_len}},
                           [&](const std::string& dir) {
                             auto t = safety::discover_safety_tokens(aligned_model, probe_model,
                                                                     path_in(data.dir, "refusals.jsonl"), dopt);
                             safety::write_safety_tokens(path_in(dir, "tokens.json"), t);
                           });
  const std::string tokens_path = path_in(tokens.dir, "tokens.json");

  // Fine-tuning with each constraint: benign data (mostly the sentiment task) with 10%
  // harmful-compliant examples.
  const int64_t n_benign = sc.sizes.sentiment_train + sc.sizes.finetune_other;
  const int64_t num_examples = static_cast<int64_t>(std::llround(n_benign / 0.9));
  auto finetune_config = [&](const std::string& method, const std::string& out_dir) {
    train::RunConfig c = run_config(aligned_model, out_dir, sc, o.threads);
    c.data.train = path_in(data.dir, "finetune_benign.jsonl");
    c.data.harmful = path_in(data.dir, "finetune_harmful.jsonl");
    c.data.harmful_fraction = 0.1;
    c.data.num_examples = num_examples;
    c.optim.lr = sc.finetune_lr;
    c.train.epochs = sc.finetune_epochs;
    c.objective.constraint = method;
    if (method == "pact" || method == "anchor") c.objective.tokens = tokens_path;
    return c;
  };
  struct Finetuned {
    std::string method;
    Stage stage;
    std::string model;
  };
  std::vector<Finetuned> runs;
  for (const std::string& method : sc.methods) {
    json inputs = {{"aligned", aligned.key}, {"data", data.key}, {"method", method}, {"epochs", sc.finetune_epochs},
                   {"lr", sc.finetune_lr}, {"harmful_fraction", 0.1}, {"num_examples", num_examples}};
    if (method == "pact" || method == "anchor") inputs["tokens"] = tokens.key;
    const Stage s = run("finetune-" + method, inputs, [&](const std::string& dir) {
      train(finetune_config(method, path_in(dir, "run")));
    });
    runs.push_back({method, s, path_in(s.dir, "run/model")});
  }

  // Evaluation of every model.
  const std::string suite = path_in(data.dir, "suite.json");
  auto eval_stage = [&](const std::string& name, const Stage& model_stage, const std::string& model_dir, bool chat) {
    const Stage s = run("eval-" + name, {{"model", model_stage.key}, {"data", data.key}}, [&](const std::string& dir) {
      const text::ChatTemplate tmpl = chat ? text::ChatTemplate::by_name("llama3") : text::ChatTemplate::by_name("plain");
      write_file_atomic(path_in(dir, "results.json"),
                        evaluate(model_dir, tmpl, suite).dump(2, ' ', false, json::error_handler_t::replace) + "\n");
    });
    return json::parse(read_file(path_in(s.dir, "results.json")));
  };

  json rows = json::array();
  auto add_row = [&](const std::string& model, const std::string& method, const json& ev, const Stage& trained,
                     const std::string& run_dir) {
    const json& h = ev["harmful_heldout"];
    const json& u = ev["sentiment_test"];
    rows.push_back({{"model", model},
                    {"method", method},
                    {"refusal_rate", rate(h, "refusal_rate")},
                    {"attack_success_rate", rate(h, "attack_success_rate")},
                    {"utility", rate(u, "accuracy")},
                    {"train_seconds", trained.seconds},
                    {"cached", trained.cached},
                    {"loss_curve", loss_curve(path_in(run_dir, "metrics.jsonl"))},
                    {"examples", {{"harmful", json::array()}, {"sentiment", json::array()}}}});
    // A few answers of each kind, for the report.
    for (const char* set : {"harmful_heldout", "sentiment_test"}) {
      const json& items = ev[set]["items"];
      for (size_t i = 0; i < items.size() && i < 4; ++i)
        rows.back()["examples"][set == std::string("harmful_heldout") ? "harmful" : "sentiment"].push_back(items[i]);
    }
  };
  add_row("probe", "base (probe)", eval_stage("probe", probe, probe_model, false), probe, path_in(probe.dir, "run"));
  add_row("aligned", "aligned", eval_stage("aligned", aligned, aligned_model, true), aligned,
          path_in(aligned.dir, "run"));
  for (const auto& r : runs)
    add_row("finetune-" + r.method, r.method, eval_stage("finetune-" + r.method, r.stage, r.model, true), r.stage,
            path_in(r.stage.dir, "run"));

  // PACT's gate by response position, before (theta = aligned) and after fine-tuning.
  json gate = nullptr;
  for (const auto& r : runs) {
    if (r.method != "pact") continue;
    const Stage g = run("gate", {{"pact", r.stage.key}, {"tokens", tokens.key}}, [&](const std::string& dir) {
      const train::RunConfig c = finetune_config("pact", path_in(dir, "unused"));
      const json after = gate_by_position(r.model, aligned_model, c, tokens_path, 256);
      const json before = gate_by_position(aligned_model, aligned_model, c, tokens_path, 256);
      write_file_atomic(path_in(dir, "gate.json"), json{{"after", after}, {"before", before}}.dump(2) + "\n");
    });
    gate = json::parse(read_file(path_in(g.dir, "gate.json")));
  }

  // The safety tokens, as discovered.
  const safety::SafetyTokens st = safety::read_safety_tokens(tokens_path);
  json top = json::array();
  for (const auto& t : st.tokens)
    top.push_back({{"id", t.id}, {"piece", t.piece}, {"weight", t.weight}, {"p_ref", t.p_ref}, {"diff", t.diff}});

  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  bool all_cached = true;
  for (const auto& s : stages) all_cached = all_cached && s["cached"].get<bool>();
  json results = {
      {"settings",
       {{"quick", o.quick},
        {"seed", o.seed},
        {"threads", threads},
        {"sizes", sizes_json(sc.sizes)},
        {"model", model_shape},
        {"vocab_size", st.vocab_size},
        {"harmful_fraction", 0.1},
        {"finetune_examples", num_examples},
        {"methods", sc.methods},
        {"judge", "keyword"},
        {"held_out_templates", harmful_templates(true)},
        {"held_out_targets", harmful_targets(true)}}},
      {"methods", rows},
      {"safety_tokens", top},
      {"gate_by_position", gate},
      {"stages", stages},
      {"all_cached", all_cached},
      {"total_seconds", total}};
  write_file_atomic(path_in(o.out, "results.json"),
                    results.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  write_file_atomic(path_in(o.out, "report.html"), render_report(results));
  return results;
}

}  // namespace safetune::demo
