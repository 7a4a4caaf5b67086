// Evaluation: generate answers to every prompt of a suite, judge the safety sets, score
// the utility sets, and gather it all into one results JSON.
//
// Prompts are rendered by the model's chat template with the generation prompt, sorted
// by length and generated in batches (left padded, KV cache; greedy unless a temperature
// is given). Answers are decoded without special tokens and cut at the template's
// end-of-turn text.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "safetune/eval/suite.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"

namespace safetune::model {
class Transformer;
}

namespace safetune::eval {

// A model ready to answer: weights (+ adapter), its tokenizer and chat template.
struct Responder {
  model::Transformer* model = nullptr;
  const text::Tokenizer* tok = nullptr;
  const text::ChatTemplate* tmpl = nullptr;
  int64_t max_position = 0;     // the model's max_position_embeddings
  std::vector<int64_t> eos_ids; // config + tokenizer EOS + the end-of-turn token
  int64_t pad_id = 0;
};

// EOS ids, pad id and limits for a loaded model (end-of-turn text that is a single token,
// e.g. "<|im_end|>", stops generation too).
Responder make_responder(model::Transformer& model, const text::Tokenizer& tok, const text::ChatTemplate& tmpl,
                         const std::vector<int64_t>& config_eos, std::optional<int64_t> config_pad,
                         int64_t max_position);

struct GenerationSettings {
  int64_t max_new_tokens = 128;
  int64_t batch_size = 8;
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;
  uint64_t seed = 0;
};

// Called after each batch with (done, total).
using Progress = std::function<void(int64_t, int64_t)>;

// The answer to each conversation (a prompt ending with a user turn), in input order.
// `where[i]` names the source for errors (a prompt too long for the model's context).
std::vector<std::string> respond(const Responder& r, const std::vector<std::vector<text::Message>>& prompts,
                                 const std::vector<std::string>& where, const GenerationSettings& g,
                                 const Progress& progress = nullptr);

// Which batches this process answers (batch b: prompts b x batch_size onwards in the
// length order); null = all. Processes that split an evaluation form every batch exactly
// as one process does, so that each answer is the one a single process gives.
using BatchOwner = std::function<bool(int64_t batch)>;

// respond() for the batches `owns` accepts; the other prompts' answers are nullopt.
std::vector<std::optional<std::string>> respond_share(const Responder& r,
                                                      const std::vector<std::vector<text::Message>>& prompts,
                                                      const std::vector<std::string>& where,
                                                      const GenerationSettings& g, const BatchOwner& owns,
                                                      const Progress& progress = nullptr);

// The answers to every prompt of a set.
std::vector<std::string> respond(const Responder& r, const PromptSet& set, const GenerationSettings& g,
                                 const Progress& progress = nullptr);

// Scores one set from its responses. `unsafe` (safety sets with a model judge): the
// judge's verdict per item, with the judge's raw answers in `judge_answers`; empty for
// the keyword judge, whose verdict is "not refused". Returns {"name", "kind", "path",
// "n", "refusal_rate", "attack_success_rate", "items"} for safety sets and {"name",
// "kind", "path", "n", "correct", "accuracy", "items"} for utility sets.
nlohmann::json score_set(const PromptSet& set, const std::vector<std::string>& responses,
                         const std::vector<std::string>& keywords, const std::vector<bool>& unsafe = {},
                         const std::vector<std::string>& judge_answers = {});

// Whether `response` answers utility item `i` of `set` correctly, by the set's kind.
bool answer_correct(const PromptSet& set, size_t i, const std::string& response);

// The user-visible prompt of a record: the last user turn's text.
std::string prompt_text(const data::Record& r);

}  // namespace safetune::eval
