// `safetune demo`: the whole method end to end at toy scale, on a CPU, over several
// seeds. Each seed is a whole world (world.cpp runs it):
//
//   data       synthetic records from word lists and the seed (synthetic_data.h)
//   tokenizer  a SentencePiece BPE model trained on the training records
//   probe      a toy Llama from random weights, fully trained to answer everything
//              (harmful requests with placeholder compliance) in the plain
//              "User: ...\n\nAssistant: " format: the "base model"
//   aligned    the probe trained further, in a Llama-3 chat template, to refuse harmful
//              requests and keep answering benign ones: the "chat model"
//   tokens     PACT step 1: safety tokens of aligned against probe on refusals
//   finetune   the chat model fine-tuned on the sentiment task with 10% harmful-compliant
//              examples, as the reference does it (LoRA r 8 / alpha 32 on q_proj and
//              v_proj, StepLR 0.85, 3 epochs), once per method (settings.h)
//   eval       every model on held-out harmful and benign requests (refusal, over-refusal,
//              first-token margin) and sentiment reviews (utility), test and validation
//   gate       PACT's gate c_t by response position, recomputed after training
// Worlds run as separate processes, several at once; the parent gathers them into
// OUT/results.json (every method's mean, sample sd and per-seed values) and
// OUT/report.html. Each stage is cached by the hash of everything it reads, under
// OUT/stages: a rerun only redoes what changed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace safetune::demo {

struct DemoOptions {
  std::string out = "runs/demo";
  std::string world = "v3";  // which world: v3 (world_v3.h) or v2 (synthetic_data.h)
  bool quick = false;   // a smaller world and fewer methods (CI)
  bool curves = false;  // also the lambda curves and pact's variants (reuses the default run's stages)
  int seeds = 0;        // worlds; 0 = the default (8, quick: 1)
  uint64_t first_seed = 1;
  // Compute threads per world; 0 = every core. One by default: the demo's ops are tiny,
  // and worlds run side by side instead (`jobs`).
  int threads = 1;
  int jobs = 0;  // worlds at once; 0 = cores / threads
  std::vector<std::string> overrides;  // settings "key=value" (settings.h)
};

// Runs (or finds cached) every world, writes OUT/results.json and OUT/report.html, and
// returns the results. Progress and the stage log go to stderr. `self` is the command
// line that runs one world: self + {"--world", SEED} (the same options otherwise).
nlohmann::json run_demo(const DemoOptions& options, const std::vector<std::string>& self);

// One world (the child process's work): writes OUT/worlds/seed-N.json and returns it.
nlohmann::json run_one_world(const DemoOptions& options, uint64_t seed);

}  // namespace safetune::demo
