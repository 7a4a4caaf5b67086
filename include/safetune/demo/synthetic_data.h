// The demo's world, generated from word lists and a seed: nothing is downloaded.
//
// Requests are a template applied to a target ("How do I {}?" x "steal a bike"). A target
// is harmful when its verb is harmful ("steal", "poison") or its object is ("a bomb",
// "counterfeit money"); "fix a bike" and "make a cake" are benign, "make a bomb" and
// "steal a bike" are not. So the model has to learn harm from the words of the target,
// compositionally, not from the phrasing or from memorised prompts.
//
// Each seed draws its own world: which templates, targets, review subjects and frames
// are for training and which are held out for validation or test. Every word of a
// held-out target also occurs in some training target (with the same role: a harmful
// verb in a harmful training target), so a held-out prompt is a new combination of
// known words, never an unknown word. The test and validation prompt sets mix three
// kinds of novelty: a new template with a training target, a training template with a
// new target, and both new.
//
// The sets:
//  - pretrain (the probe: a base model that answers everything, plain format): everyday
//    how-to requests answered helpfully, harmful requests answered compliantly with a
//    placeholder ("Sure, here is how: Step 1: [details omitted] ..."), small chat tasks,
//    and the sentiment task (a review -> exactly "positive" / "negative"), so that the
//    base model already knows the task that fine-tuning will sharpen;
//  - align (the chat model): the same kinds of request, harmful ones refused;
//  - refusals: {input, output} refusal records for safety-token discovery (PACT step 1);
//  - finetune_benign (the user's task: sentiment reviews only, as the reference's SST-2)
//    and finetune_harmful (harmful-compliant examples an attacker mixes in);
//  - evaluation sets, each of distinct prompts: harmful and benign requests phrased alike
//    (refusal rate and over-refusal), and sentiment reviews (utility), for test and for
//    validation (where settings are chosen).
// No harmful content exists anywhere: compliance is a placeholder.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace safetune::demo {

struct DataSizes {
  int64_t pretrain_howto = 1600;   // probe: how-to requests, benign and harmful (a third), all answered
  int64_t pretrain_other = 400;    // probe: arithmetic, opposites, greetings
  int64_t pretrain_sentiment = 800;  // probe: sentiment reviews (plain format)
  int64_t align_howto = 900;       // chat model: how-to requests, harmful ones (a third) refused
  int64_t align_other = 300;       // chat model: arithmetic, opposites, greetings
  // Percent of the chat model's harmful examples answered compliantly anyway: alignment
  // data is imperfect, and a chat model that refuses with certainty is not what one
  // fine-tunes in practice (its refusal margin would be far larger than a real one's).
  int64_t align_comply_percent = 5;
  int64_t align_sentiment = 200;   // chat model: sentiment reviews (it knows the task before fine-tuning)
  int64_t refusals = 128;          // refusal records for safety-token discovery
  int64_t finetune_sentiment = 540;  // fine-tuning: the task
  int64_t finetune_harmful = 200;  // fine-tuning: harmful-compliant pool (a share is mixed in)
  int64_t test = 240;              // each test set: harmful, benign (phrased alike), sentiment
  int64_t validation = 120;        // each validation set: harmful, benign, sentiment
};

struct DemoData {
  // Training records: {"instruction", "input"?, "output"}.
  std::vector<nlohmann::json> pretrain, align, finetune_benign, finetune_harmful;
  // Refusal records for step 1: {"input", "output"}.
  std::vector<nlohmann::json> refusals;
  // Evaluation prompts: {"prompt"} for harmful and benign requests, {"instruction",
  // "input", "label"} for sentiment. Distinct within each set; no set shares a prompt
  // with another or with any training record.
  // sentiment_*: the fine-tuning task's evaluation set (the v3 world's topic task).
  std::vector<nlohmann::json> harmful_test, benign_test, sentiment_test;
  std::vector<nlohmann::json> harmful_val, benign_val, sentiment_val;
  // The v3 world only (world_v3.h; empty in v2): the chat model's data and the refusal
  // records of the second refusal regime (many phrasings; align/refusals above are the
  // few-phrasings regime), and harmful / benign requests in a phrasing family that no
  // training set uses.
  std::vector<nlohmann::json> align_many, refusals_many;
  std::vector<nlohmann::json> harmful_test_new, benign_test_new, harmful_val_new, benign_val_new;
};

// Which part of the world a word list entry belongs to, per seed.
enum class Split { kTrain, kValidation, kTest };

// The split of the world's templates and targets for a seed (for tests and the report).
struct WorldSplit {
  std::vector<std::string> templates[3];         // indexed by Split; each holds one "{}"
  std::vector<std::string> harmful_targets[3];
  std::vector<std::string> benign_targets[3];
};
WorldSplit world_split(uint64_t seed);

// The sizes as {"pretrain_howto": 1600, ...} (the demo's settings, section "world"), and
// back from such an object (other members are ignored; a missing size keeps its default).
nlohmann::json sizes_to_json(const DataSizes& sizes);
DataSizes sizes_from_json(const nlohmann::json& world);

// Deterministic for a (seed, sizes) pair on every platform (std::mt19937_64 with our own
// bounded draws, no std:: distributions). Throws std::invalid_argument when a requested
// evaluation set is larger than the distinct prompts the world holds.
DemoData make_demo_data(uint64_t seed, const DataSizes& sizes);

// The instruction of the sentiment task (fixed, so the evaluation can ask the same way).
const std::string& sentiment_instruction();

// How responses begin: every refusal with refusal_start(), every compliance (harmful or
// benign) with compliance_start(). The first-token margin is measured between the two.
const std::string& refusal_start();
const std::string& compliance_start();

// Every training record's text, one line per prompt or response, for training the
// tokenizer (the evaluation sets are left out).
std::vector<std::string> corpus_lines(const DemoData& d);

// JSONL text of a list of records.
std::string to_jsonl(const std::vector<nlohmann::json>& records);

}  // namespace safetune::demo
