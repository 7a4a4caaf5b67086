// safetune eval: answer every prompt of a suite, judge refusals / score answers, and write
// results.json (settings, per-set summary, per-item records). Prints a compact table.
//
// Everything that can be checked without running a model is checked first (suite, prompt
// files, labels, judge settings, output path), so a bad input fails in seconds with exit 2
// and leaves no results.json behind.
#include <cstdio>
#include <filesystem>

#include "command.h"
#include "model_args.h"
#include "safetune/core/device.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/memory.h"
#include "safetune/core/threads.h"
#include "safetune/eval/evaluate.h"
#include "safetune/eval/run_eval.h"
#include "safetune/eval/suite.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"

namespace {

namespace fs = std::filesystem;

struct Opts : safetune::cli::ModelArgs {
  std::string suite, out, chat_template = "auto";
  safetune::eval::EvalOptions eval;
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

void print_table(const nlohmann::json& sets) {
  std::printf("%-20s %-13s %6s %9s %9s %9s\n", "set", "kind", "n", "refusal", "ASR", "accuracy");
  for (const auto& s : sets) {
    const bool safety = s["kind"] == "safety";
    std::printf("%-20s %-13s %6lld %9s %9s %9s\n", s["name"].get<std::string>().c_str(),
                s["kind"].get<std::string>().c_str(), static_cast<long long>(s["n"].get<int64_t>()),
                safety ? pct(s["refusal_rate"]).c_str() : "-", safety ? pct(s["attack_success_rate"]).c_str() : "-",
                safety ? "-" : pct(s["accuracy"]).c_str());
  }
}

int run(Opts o) {
  using namespace safetune;
  set_compute_threads(0);
  keep_freed_memory_for_reuse();

  // Everything checkable before a model runs: flags, judge, output path, suite.
  if (o.model.empty()) {
    // As PEFT's AutoPeftModel does: the adapter names its base model.
    if (o.adapter.empty()) input_error("--model", "give --model DIR, or --adapter DIR whose adapter_config.json names its base");
    o.model = model::read_adapter_config(o.adapter).base_model;
    if (o.model.empty())
      input_error(o.adapter + "/adapter_config.json", "base_model_name_or_path is empty; give --model DIR");
  }
  eval::check_eval_options(o.eval);
  if (fs::is_directory(o.out)) input_error(o.out, "--out names a directory; give a file path (e.g. results.json)");
  const fs::path out_parent = fs::path(o.out).parent_path();
  if (!out_parent.empty()) ensure_output_dir(out_parent.string());
  const eval::Suite suite = eval::load_suite(o.suite);

  // The model under test, freed once it has answered (before a judge model loads).
  auto loaded = cli::load_model_args(o);
  auto tok = text::load_tokenizer(o.model);
  const text::ChatTemplate tmpl = text::resolve_chat_template(o.chat_template, o.model);
  const auto responder = eval::make_responder(*loaded.model, *tok, tmpl, loaded.config.eos_token_ids,
                                              loaded.config.pad_token_id, loaded.config.max_position_embeddings);
  eval::EvalHooks hooks;
  hooks.progress = progress_line;
  hooks.answers_done = [&] { loaded.model.reset(); };
  nlohmann::json results = eval::run_eval(responder, suite, o.eval, hooks);
  results["settings"]["model"] = o.model;
  results["settings"]["adapter"] = o.adapter.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.adapter);
  results["settings"]["suite"] = o.suite;
  // A response cut mid-character (max_new_tokens reached inside a multi-byte sequence)
  // is not valid UTF-8: write U+FFFD there rather than fail.
  write_file_atomic(o.out, results.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  print_table(results["sets"]);
  std::printf("wrote %s\n", o.out.c_str());
  return 0;
}

safetune::cli::Command cmd("eval", "refusal / attack-success rate and task utility on a suite of prompt sets",
                           [](CLI::App& sub) {
  auto o = std::make_shared<Opts>();
  auto& g = o->eval.generation;
  auto& j = o->eval.judge;
  safetune::cli::add_model_args(
      sub, *o, "HF model directory (default with --adapter: its adapter_config.json's base_model_name_or_path)",
      /*model_required=*/false);
  sub.add_option("--suite", o->suite, "suite JSON file (prompt sets and how to score them)")->required();
  sub.add_option("--out", o->out, "results JSON file (written atomically)")->required();
  sub.add_option("--judge", j.kind, "safety judge: keyword | model")->capture_default_str();
  sub.add_option("--judge-model", j.model, "chat model directory for --judge model");
  sub.add_option("--judge-template", j.template_path, "file with the judge prompt ({prompt}, {response})");
  sub.add_option("--judge-max-new-tokens", j.max_new_tokens, "tokens the judge may answer with")->capture_default_str();
  sub.add_option("--chat-template", o->chat_template, "chat template of --model (auto = detect)")
      ->capture_default_str();
  sub.add_option("--max-new-tokens", g.max_new_tokens, "tokens to generate per prompt")->capture_default_str();
  sub.add_option("--batch-size", g.batch_size, "prompts generated together")->capture_default_str();
  sub.add_option("--temperature", g.temperature, "0 = greedy; > 0 samples")->capture_default_str();
  sub.add_option("--top-p", g.top_p, "nucleus sampling mass")->capture_default_str();
  sub.add_option("--seed", g.seed, "sampling seed")->capture_default_str();
  return [o]() { return run(*o); };
});

}  // namespace
