// safetune generate: continue one or more prompts (batched, left-padded, KV cache).
// --prompt (repeatable) prints the decoded continuation of each, one per line;
// --ids (repeatable) prints the new ids, comma-separated, one line per prompt.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cstdio>

#include "command.h"
#include "model_args.h"
#include "safetune/core/device.h"
#include "safetune/core/memory.h"
#include "safetune/core/threads.h"
#include "safetune/model/generate.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/text/tokenizer.h"

namespace {

struct Opts : safetune::cli::ModelArgs {
  std::vector<std::string> prompts, ids;
  int64_t max_new_tokens = 32;
  double temperature = 0.0, top_p = 1.0;
  uint64_t seed = 0;
  bool add_bos = false;
  bool no_cache = false;
};

int run(const Opts& o) {
  using namespace safetune;
  set_compute_threads(0);
  keep_freed_memory_for_reuse();
  if (o.prompts.empty() == o.ids.empty()) input_error("generate", "give --prompt or --ids (one or more times), not both");
  if (o.max_new_tokens < 0) input_error("--max-new-tokens", "must be >= 0");
  if (o.temperature < 0) input_error("--temperature", "must be >= 0");
  if (!(o.top_p > 0 && o.top_p <= 1)) input_error("--top-p", "must be in (0, 1]");
  auto loaded = cli::load_model_args(o);
  const auto& cfg = loaded.config;

  std::unique_ptr<text::Tokenizer> tok;
  std::vector<std::vector<int64_t>> prompts;
  if (!o.prompts.empty()) {
    tok = text::load_tokenizer(o.model);
    for (const std::string& p : o.prompts) {
      std::vector<int64_t> ids;
      for (int32_t id : tok->encode(p, o.add_bos)) ids.push_back(id);
      if (ids.empty()) input_error("--prompt", "encodes to no tokens");
      prompts.push_back(ids);
    }
  } else {
    for (const std::string& s : o.ids) prompts.push_back(cli::parse_id_list(s, "--ids"));
  }
  for (const auto& p : prompts) cli::check_ids(p, cfg.vocab_size, o.ids.empty() ? "--prompt" : "--ids");

  std::vector<int64_t> eos = cfg.eos_token_ids;
  if (tok && tok->eos_id && std::find(eos.begin(), eos.end(), *tok->eos_id) == eos.end()) eos.push_back(*tok->eos_id);
  const int64_t pad = cfg.pad_token_id ? *cfg.pad_token_id : (eos.empty() ? 0 : eos[0]);
  model::GenerateOptions g =
      model::generate_options(o.max_new_tokens, o.temperature, o.top_p, o.seed, std::move(eos), pad);
  g.use_cache = !o.no_cache;
  auto outs = model::generate(*loaded.model, prompts, g);

  for (const auto& ids : outs) {
    if (tok) {
      std::vector<int32_t> ids32(ids.begin(), ids.end());
      std::printf("%s\n", tok->decode(ids32, /*skip_special=*/true).c_str());
    } else {
      std::string line;
      for (size_t i = 0; i < ids.size(); ++i) line += (i ? "," : "") + std::to_string(ids[i]);
      std::printf("%s\n", line.c_str());
    }
  }
  return 0;
}

safetune::cli::Command cmd("generate", "sample continuations of prompts (greedy by default)", [](CLI::App& sub) {
  auto o = std::make_shared<Opts>();
  safetune::cli::add_model_args(sub, *o);
  sub.add_option("--prompt", o->prompts, "prompt text (repeatable: one batch)");
  sub.add_option("--ids", o->ids, "prompt as comma-separated token ids (repeatable)");
  sub.add_flag("--add-bos", o->add_bos, "prepend BOS when encoding --prompt");
  sub.add_flag("--no-cache", o->no_cache, "recompute the whole sequence for every token (checks the KV cache)");
  sub.add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate per prompt")->capture_default_str();
  sub.add_option("--temperature", o->temperature, "0 = greedy")->capture_default_str();
  sub.add_option("--top-p", o->top_p, "nucleus sampling mass")->capture_default_str();
  sub.add_option("--seed", o->seed, "sampling seed")->capture_default_str();
  return [o]() { return run(*o); };
});

}  // namespace
