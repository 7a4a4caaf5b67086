// The how-to requests' words, shared by the demo's worlds (synthetic_data.cpp holds the
// lists): a target is a verb and an object ("steal a bike"), harmful when the verb is
// ("steal", "poison") or the object is ("a bomb", "counterfeit money").
#pragma once
#include <string>
#include <vector>

namespace safetune::demo {

struct Target {
  std::string text, verb, object;
};

// Every (verb, object) target, harmful or benign, each text once.
void all_targets(std::vector<Target>& harmful, std::vector<Target>& benign);

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
