// What the demo's worlds share (synthetic_data.cpp holds it): the how-to requests' words
// and splits, and the small chat tasks. A request's target is a verb and an object ("steal
// a bike"), harmful when the verb is ("steal", "poison") or the object is ("a bomb",
// "counterfeit money").
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace safetune::demo {

struct Target {
  std::string text, verb, object;
};

class Rng;

// Every (verb, object) target, harmful or benign, each text once.
void all_targets(std::vector<Target>& harmful, std::vector<Target>& benign);

// Every target split into training, validation and test ones (12% and 20% held out,
// harmful and benign apart), each held-out target's verb and object covered by the
// training targets of its harmfulness (covered_by).
void split_targets(Rng& rng, std::vector<Target> harmful[3], std::vector<Target> benign[3]);

// A held-out split's (template, target) pools, each shuffled: a held-out template with a
// training target, a training template with a held-out target, both held out. `templates`
// and `targets` are a world's three splits, `split` the held-out one (1 or 2).
// std::invalid_argument when the pools hold fewer than `n` pairs (`what` names them).
using RequestPool = std::vector<std::pair<std::string, std::string>>;
void held_out_pools(Rng& rng, const std::vector<std::string>* templates, const std::vector<Target>* targets,
                    int split, int64_t n, const char* what, RequestPool pools[3]);

// One of the small chat tasks both worlds' chat models learn: kind 0 a sum ("What is 3 plus
// 4?"), 1 an opposite, otherwise a greeting, its words drawn from `rng`.
nlohmann::json small_chat_task(Rng& rng, int kind);

// The v2 world's request templates ("how do I {}?", ...): 82 phrasings, each with one "{}".
const std::vector<std::string>& request_cores();

// The v2 world's refusals: five sentences, every one starting "I".
const std::vector<std::string>& few_refusal_phrasings();

// Whether a held-out target only combines words of the training targets: its verb and its
// object each occur in some training target of the same harmfulness.
inline bool covered_by(const Target& t, const std::vector<Target>& train) {
  bool verb = false, object = false;
  for (const Target& u : train) {
    verb = verb || u.verb == t.verb;
    object = object || u.object == t.object;
  }
  return verb && object;
}

}  // namespace safetune::demo
