// safetune inspect FILE: a readable view of a file safetune wrote (tokens.json).
#include <cstdio>
#include <string>

#include "command.h"
#include "safetune/io/hf_config.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/text/tokenizer.h"

namespace {

struct Opts {
  std::string path, model;
};

int run(const Opts& o) {
  using namespace safetune;
  safety::SafetyTokens t = safety::read_safety_tokens(o.path);
  std::string check;
  if (!o.model.empty()) {
    // The vocabulary (size and pieces) must fit; the hash only reports whether this is
    // the very model the tokens were found on.
    const io::ModelConfig cfg = io::load_hf_config(o.model);
    auto tok = text::load_tokenizer(o.model);
    safety::validate_safety_tokens(t, o.path, cfg.vocab_size, tok.get());
    check = safety::model_hash(o.model) == t.aligned_hash ? "the aligned model itself" : "same vocabulary, other weights";
  }
  const auto& s = t.settings;
  std::printf("%s: safety tokens (PACT step 1)\n", o.path.c_str());
  std::printf("  aligned  %s  sha256 %s\n", t.aligned_path.c_str(), t.aligned_hash.c_str());
  std::printf("  probe    %s  sha256 %s\n", t.probe_path.c_str(), t.probe_hash.c_str());
  std::printf("  settings mode=%s topk=%lld max_resp_len=%lld temperature=%g limit=%lld chat_template=%s\n",
              s.mode.c_str(), static_cast<long long>(s.topk), static_cast<long long>(s.max_resp_len), s.temperature,
              static_cast<long long>(s.limit), s.chat_template.c_str());
  std::printf("  vocab_size %lld, %lld examples, %lld response positions, %zu tokens\n\n",
              static_cast<long long>(t.vocab_size), static_cast<long long>(t.num_examples),
              static_cast<long long>(t.num_positions), t.tokens.size());
  if (!check.empty()) std::printf("  fits %s: %s\n\n", o.model.c_str(), check.c_str());
  std::printf("%5s %8s  %-24s %10s %12s %13s\n", "rank", "id", "piece", "weight", "p_ref", "diff");
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    const auto& k = t.tokens[i];
    std::string piece = "'" + safety::escape_piece(k.piece) + "'";
    std::printf("%5zu %8lld  %-24s %10.5f %12.6g %13.6g\n", i + 1, static_cast<long long>(k.id), piece.c_str(),
                k.weight, k.p_ref, k.diff);
  }
  return 0;
}

safetune::cli::Command cmd("inspect", "print a readable view of a tokens.json", [](CLI::App& sub) {
  auto o = std::make_shared<Opts>();
  sub.add_option("file", o->path, "tokens.json written by `safetune tokens`")->required();
  sub.add_option("--model", o->model, "also check that the tokens fit this model directory's vocabulary");
  return [o]() { return run(*o); };
});

}  // namespace
