// safetune eval: answer every prompt of a suite, judge refusals / score answers, and write
// results.json (settings, per-set summary, per-item records). Prints a compact table.
//
// Everything that can be checked without running a model is checked first (suite, prompt
// files, labels, judge settings, output path), so a bad input fails in seconds with exit 2
// and leaves no results.json behind.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include "command.h"
#include "model_cli.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/threads.h"
#include "safetune/eval/evaluate.h"
#include "safetune/eval/judge.h"
#include "safetune/eval/suite.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"

namespace {

namespace fs = std::filesystem;

struct Opts {
  std::string model, adapter, suite, out, judge = "keyword", judge_model, judge_template, chat_template = "auto";
  std::string device = "cpu";
  int64_t max_new_tokens = 128, batch_size = 8, judge_max_new_tokens = 16;
  double temperature = 0.0, top_p = 1.0;
  uint64_t seed = 0;
};

void progress_line(const std::string& what, int64_t done, int64_t total) {
  std::fprintf(stderr, "\r%s: %lld/%lld", what.c_str(), static_cast<long long>(done), static_cast<long long>(total));
  if (done == total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

std::string pct(const nlohmann::json& v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * v.get<double>());
  return buf;
}

int run(Opts o) {
  using namespace safetune;
  set_compute_threads(0);
  cli::keep_freed_memory();

  // Flags.
  if (o.model.empty()) {
    // As PEFT's AutoPeftModel does: the adapter names its base model.
    if (o.adapter.empty()) input_error("--model", "give --model DIR, or --adapter DIR whose adapter_config.json names its base");
    o.model = model::read_adapter_config(o.adapter).base_model;
    if (o.model.empty())
      input_error(o.adapter + "/adapter_config.json", "base_model_name_or_path is empty; give --model DIR");
  }
  if (o.max_new_tokens < 1) input_error("--max-new-tokens", "must be >= 1");
  if (o.batch_size < 1) input_error("--batch-size", "must be >= 1");
  if (o.judge_max_new_tokens < 1) input_error("--judge-max-new-tokens", "must be >= 1");
  if (o.temperature < 0) input_error("--temperature", "must be >= 0");
  if (!(o.top_p > 0 && o.top_p <= 1)) input_error("--top-p", "must be in (0, 1]");
  if (o.judge != "keyword" && o.judge != "model") input_error("--judge", "expected keyword or model, got '" + o.judge + "'");
  const bool model_judge = o.judge == "model";
  if (model_judge && o.judge_model.empty()) input_error("--judge", "--judge model needs --judge-model DIR");
  if (!model_judge && (!o.judge_model.empty() || !o.judge_template.empty()))
    input_error("--judge-model", "a judge model is used only with --judge model");
  if (fs::is_directory(o.out)) input_error(o.out, "--out names a directory; give a file path (e.g. results.json)");
  const fs::path out_parent = fs::path(o.out).parent_path();
  if (!out_parent.empty()) ensure_output_dir(out_parent.string());

  // Judge set-up: its model must be a chat model (the verdict prompt is a user turn).
  std::string judge_template = eval::default_judge_template();
  if (model_judge) {
    if (!fs::is_directory(o.judge_model)) input_error(o.judge_model, "judge model directory not found");
    if (!eval::has_chat_template(o.judge_model))
      input_error(o.judge_model, "the judge model has no chat template (tokenizer_config.json chat_template or "
                                 "chat_template.jinja); a judge must be a chat model");
    if (!o.judge_template.empty()) judge_template = read_file(o.judge_template);
    eval::fill_judge_template(judge_template, "", "", o.judge_template.empty() ? "judge template" : o.judge_template);
  }

  // Suite and prompt files.
  eval::Suite suite = eval::load_suite(o.suite);

  // The model under test.
  const c10::Device device = cli::parse_device(o.device);
  auto loaded = model::load_model(o.model, device);
  if (!o.adapter.empty()) model::load_adapter(o.adapter, *loaded.model);
  auto tok = text::load_tokenizer(o.model);
  const text::ChatTemplate tmpl = text::resolve_chat_template(o.chat_template, o.model);
  const auto responder = eval::make_responder(*loaded.model, *tok, tmpl, loaded.config.eos_token_ids,
                                              loaded.config.pad_token_id, loaded.config.max_position_embeddings);

  eval::GenerationSettings gen;
  gen.max_new_tokens = o.max_new_tokens;
  gen.batch_size = o.batch_size;
  gen.temperature = o.temperature;
  gen.top_p = o.top_p;
  gen.seed = o.seed;

  std::vector<std::vector<std::string>> responses;
  {
    torch::NoGradGuard no_grad;
    for (const auto& set : suite.sets) {
      responses.push_back(eval::respond(responder, set, gen, [&](int64_t d, int64_t t) {
        progress_line("generate " + set.name, d, t);
      }));
    }
  }
  loaded.model.reset();  // free the model before a judge model loads

  // Model judge: one verdict per safety item.
  std::vector<std::vector<bool>> unsafe(suite.sets.size());
  std::vector<std::vector<std::string>> judge_answers(suite.sets.size());
  if (model_judge) {
    torch::NoGradGuard no_grad;
    auto judge = model::load_model(o.judge_model, device);
    auto jtok = text::load_tokenizer(o.judge_model);
    const text::ChatTemplate jtmpl = text::resolve_chat_template("auto", o.judge_model);
    const auto jr = eval::make_responder(*judge.model, *jtok, jtmpl, judge.config.eos_token_ids,
                                         judge.config.pad_token_id, judge.config.max_position_embeddings);
    eval::GenerationSettings jg;  // greedy: a verdict should not depend on a seed
    jg.max_new_tokens = o.judge_max_new_tokens;
    jg.batch_size = o.batch_size;
    for (size_t s = 0; s < suite.sets.size(); ++s) {
      const auto& set = suite.sets[s];
      if (set.kind != eval::SetKind::kSafety) continue;
      std::vector<std::vector<text::Message>> prompts;
      std::vector<std::string> where;
      for (size_t i = 0; i < set.records.size(); ++i) {
        prompts.push_back({{"user", eval::fill_judge_template(judge_template, eval::prompt_text(set.records[i]),
                                                               responses[s][i], "judge template")}});
        where.push_back(set.records[i].where + " (judge prompt)");
      }
      judge_answers[s] = eval::respond(jr, prompts, where, jg, [&](int64_t d, int64_t t) {
        progress_line("judge " + set.name, d, t);
      });
      for (const auto& a : judge_answers[s]) unsafe[s].push_back(eval::judge_says_unsafe(a));
    }
  }

  // Results.
  nlohmann::json settings = {
      {"model", o.model}, {"adapter", o.adapter.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.adapter)},
      {"suite", o.suite}, {"chat_template", tmpl.name()}, {"judge", o.judge},
      {"max_new_tokens", o.max_new_tokens}, {"batch_size", o.batch_size},
      {"decoding", o.temperature > 0 ? "sampled" : "greedy"}, {"temperature", o.temperature}, {"top_p", o.top_p},
      {"seed", o.seed}, {"refusal_keywords", suite.refusal_keywords}, {"refusal_match", "case-insensitive substring"}};
  if (model_judge) {
    settings["judge_model"] = o.judge_model;
    settings["judge_template"] = judge_template;
    settings["judge_max_new_tokens"] = o.judge_max_new_tokens;
  }
  nlohmann::json sets = nlohmann::json::array();
  for (size_t s = 0; s < suite.sets.size(); ++s)
    sets.push_back(eval::score_set(suite.sets[s], responses[s], suite.refusal_keywords, unsafe[s], judge_answers[s]));
  nlohmann::json results = {{"settings", settings}, {"sets", sets}};
  // A response cut mid-character (max_new_tokens reached inside a multi-byte sequence)
  // is not valid UTF-8: write U+FFFD there rather than fail.
  write_file_atomic(o.out, results.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");

  std::printf("%-20s %-13s %6s %9s %9s %9s\n", "set", "kind", "n", "refusal", "ASR", "accuracy");
  for (const auto& s : sets) {
    const bool safety = s["kind"] == "safety";
    std::printf("%-20s %-13s %6lld %9s %9s %9s\n", s["name"].get<std::string>().c_str(),
                s["kind"].get<std::string>().c_str(), static_cast<long long>(s["n"].get<int64_t>()),
                safety ? pct(s["refusal_rate"]).c_str() : "-", safety ? pct(s["attack_success_rate"]).c_str() : "-",
                safety ? "-" : pct(s["accuracy"]).c_str());
  }
  std::printf("wrote %s\n", o.out.c_str());
  return 0;
}

safetune::cli::Command cmd("eval", "refusal / attack-success rate and task utility on a suite of prompt sets",
                           [](CLI::App& sub) {
  auto o = std::make_shared<Opts>();
  sub.add_option("--model", o->model,
                 "HF model directory (default with --adapter: its adapter_config.json's base_model_name_or_path)");
  sub.add_option("--adapter", o->adapter, "PEFT LoRA adapter directory applied on top of --model");
  sub.add_option("--suite", o->suite, "suite JSON file (prompt sets and how to score them)")->required();
  sub.add_option("--out", o->out, "results JSON file (written atomically)")->required();
  sub.add_option("--judge", o->judge, "safety judge: keyword | model")->capture_default_str();
  sub.add_option("--judge-model", o->judge_model, "chat model directory for --judge model");
  sub.add_option("--judge-template", o->judge_template, "file with the judge prompt ({prompt}, {response})");
  sub.add_option("--judge-max-new-tokens", o->judge_max_new_tokens, "tokens the judge may answer with")
      ->capture_default_str();
  sub.add_option("--chat-template", o->chat_template, "chat template of --model (auto = detect)")
      ->capture_default_str();
  sub.add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate per prompt")->capture_default_str();
  sub.add_option("--batch-size", o->batch_size, "prompts generated together")->capture_default_str();
  sub.add_option("--temperature", o->temperature, "0 = greedy; > 0 samples")->capture_default_str();
  sub.add_option("--top-p", o->top_p, "nucleus sampling mass")->capture_default_str();
  sub.add_option("--seed", o->seed, "sampling seed")->capture_default_str();
  sub.add_option("--device", o->device, "cpu | cuda")->capture_default_str();
  return [o]() { return run(*o); };
});

}  // namespace
