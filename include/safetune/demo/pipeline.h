// `safetune demo`: the whole method end to end at toy scale, on a CPU, in minutes.
//
//   data       synthetic records from templates and a seed (synthetic_data.h)
//   tokenizer  a SentencePiece BPE model trained on the training records
//   probe      a tiny Llama from random weights, fully fine-tuned to answer everything
//              (harmful requests with placeholder compliance) in the plain
//              "User: ...\n\nAssistant: " format: the "base model"
//   aligned    the probe fine-tuned, in a Llama-3 chat template, to refuse harmful
//              requests and keep answering benign ones: the "chat model"
//   tokens     PACT step 1: safety tokens of aligned against probe on refusals
//   finetune   the aligned model fine-tuned on the sentiment task + other benign tasks
//              with 10% harmful-compliant examples, once per constraint (none,
//              kl_full, pact, anchor)
//   eval       every model on held-out harmful prompts (keyword judge) and the
//              held-out sentiment reviews (exact match)
//   gate       PACT's gate c_t by response position t, recomputed after training
// Each stage is cached by the hash of its inputs (stages.h) under OUT/stages; results.json
// and report.html go to OUT.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace safetune::demo {

struct DemoOptions {
  std::string out = "runs/demo";
  bool quick = false;  // smaller data and fewer steps (CI); skips the anchor constraint
  uint64_t seed = 1;
  // Compute threads; 0 = every core. One by default: the demo's ops are tiny, so a
  // second thread saves little, and on a busy machine every op's thread barrier waits
  // for a descheduled thread (measured: 5x slower with 2 threads under load).
  int threads = 1;
};

// Runs (or finds cached) every stage, writes OUT/results.json and OUT/report.html, and
// returns the results. Progress and the stage log go to stderr.
nlohmann::json run_demo(const DemoOptions& options);

}  // namespace safetune::demo
