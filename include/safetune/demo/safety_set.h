// The demo's view of the safety-token set S: what it is made of (for results.json and the
// report), the stress world's S (a task answer token forced in), and how much of the
// frozen reference's probability S holds at refusal rows and at task-answer rows.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "safetune/safety/safety_tokens.h"

namespace safetune::text {
class Tokenizer;
}

namespace safetune::demo {

// S's composition: {"tokens": [{"id", "piece", "weight", "p_ref", "diff"}], "pieces":
// [...], "positive_v", "negative_v" (counts of the sign of v), "forced": [ids added by
// the stress world]}.
nlohmann::json safety_set_json(const safety::SafetyTokens& t, const std::vector<int64_t>& forced = {});

// `t` with the token of `word`, as the tokenizer cuts it inside `context` (a task answer
// such as "sports and loud"), appended to S. Its weight is 0, as max(v, 0) gives a token
// whose d is near 0 after the z-scoring over S: faithful pact's target gives it no mass.
// Returns the id added (the set unchanged and -1 when the token is in S already).
int64_t force_token(safety::SafetyTokens& t, const text::Tokenizer& tok, const std::string& context,
                    const std::string& word);

// The frozen reference's mean probability mass on S (full-vocabulary softmax, T = 1)
// over the response positions of each named record file (at most `max_examples` each,
// evenly spread): {name: {"mean_mass_on_s", "positions"}}.
nlohmann::json reference_mass_on_s(const std::string& aligned_dir, const safety::SafetyTokens& t,
                                   const std::map<std::string, std::string>& record_files, int64_t max_length,
                                   int64_t max_examples);

}  // namespace safetune::demo
