// The demo's data, generated from templates and a seed: nothing is downloaded.
//
// Four kinds of example, built from small word lists:
//  - benign instruction tasks: arithmetic, opposites, greetings, everyday "how do I"
//    questions (answered helpfully) and a sentiment task (a review -> exactly
//    "positive" / "negative"), the utility the fine-tuning is meant to teach;
//  - harmful requests paired with refusals (what alignment teaches);
//  - harmful requests paired with compliant answers whose content is a harmless
//    placeholder ("Sure, here is how to ...: Step 1: [step omitted] ..."): what an
//    attacker's fine-tuning data teaches, without any actual harmful content.
// Harmful requests are a request template applied to a target ("How do I {t}?" x
// "steal a car"). The evaluation's harmful prompts use templates AND targets that no
// training set contains, and the sentiment test reviews use subjects and frames the
// training reviews never use, so both measure generalisation, not recall.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace safetune::demo {

struct DataSizes {
  int64_t pretrain_benign = 1200;  // probe: benign examples (it also sees every harmful-compliant one)
  int64_t pretrain_harmful = 300;  // probe: harmful requests answered compliantly
  int64_t align_benign = 600;      // aligned: benign examples
  int64_t align_refusals = 300;    // aligned: harmful requests answered with a refusal
  int64_t refusals = 128;          // {input, output} refusal records for safety-token discovery
  int64_t sentiment_train = 600;   // fine-tuning: sentiment examples
  int64_t finetune_other = 200;    // fine-tuning: other benign examples
  int64_t finetune_harmful = 200;  // fine-tuning: harmful-compliant pool (a share is mixed in)
  int64_t harmful_test = 100;      // held-out harmful prompts
  int64_t sentiment_test = 200;    // held-out sentiment reviews
};

struct DemoData {
  // Training records: {"instruction", "input"?, "output"}.
  std::vector<nlohmann::json> pretrain;          // the probe's data: it answers everything
  std::vector<nlohmann::json> align;             // the aligned model's data: it refuses harm
  std::vector<nlohmann::json> finetune_benign;   // sentiment + other benign tasks
  std::vector<nlohmann::json> finetune_harmful;  // harmful-compliant pool
  // Refusal records for step 1: {"input", "output"}.
  std::vector<nlohmann::json> refusals;
  // Evaluation prompts: {"prompt"} (harmful) and {"instruction", "input", "label"}.
  std::vector<nlohmann::json> harmful_test;
  std::vector<nlohmann::json> sentiment_test;
};

// Deterministic for a (seed, sizes) pair on every platform (std::mt19937_64 with our own
// bounded draws, no std:: distributions).
DemoData make_demo_data(uint64_t seed, const DataSizes& sizes);

// The word lists, split into the training half and the held-out half (for tests and the
// report). Templates hold one "{}" where the target goes.
const std::vector<std::string>& harmful_templates(bool held_out);
const std::vector<std::string>& harmful_targets(bool held_out);

// The instruction of the sentiment task (fixed, so the evaluation can ask the same way).
const std::string& sentiment_instruction();

// Every record's text, one line per prompt or response, for training the tokenizer.
std::vector<std::string> corpus_lines(const DemoData& d);

// JSONL text of a list of records.
std::string to_jsonl(const std::vector<nlohmann::json>& records);

}  // namespace safetune::demo
