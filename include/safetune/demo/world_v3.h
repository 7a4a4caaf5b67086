// The demo's v3 world (the default; `--world v2` is synthetic_data.h's): built so that
// the methods can be told apart.
//
//  - The fine-tuning task is new to the chat model: a text about a topic ("We talked
//    about the match and the coach.") -> that topic's code name ("sports and loud"),
//    one of eight, three words. Both models know the topics (asked what a note is about,
//    they say "The topic is sports."), but no code name occurs in their data and none of
//    their responses starts with a topic word, so before fine-tuning the chat model
//    answers at chance or below (exact match; chance 12.5%).
//  - Two refusal regimes, each its own chat model trained on the same requests: "few"
//    (the v2 world's five sentences, all starting "I") and "many" (compositional: an
//    opening, a refusal, a reason; 150 phrasings with six different first words).
//  - Compliance starts vary ("Sure", "Here is", "Of course", "Okay"); half of the
//    attacker's harmful-compliant fine-tuning answers start with words no response of the
//    probe or the chat model ever starts with ("Absolutely", "Certainly", ...).
//  - Requests are far more varied than in v2 (openings, closings and time/manner fillers
//    around v2's 82 templates and 26 of other shapes), so the harmful/benign decision has to rest on the verb and
//    object; a second phrasing family, written separately and used by no training set,
//    measures refusal and over-refusal on phrasings the world never trains on.
// The splits of templates and targets are those of the v2 world's rules (held-out
// prompts combine known words); the task's frames are split the same way.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "safetune/demo/synthetic_data.h"

namespace safetune::demo {

// The v3 world for a seed. The sizes are DataSizes's, read for this world as: *_howto
// the requests, *_other the small chat tasks, pretrain_sentiment / align_sentiment the
// probe's / chat model's questions of what a note is about (answered with the plain
// topic word, never the code name),
// finetune_sentiment the topic task's examples; align_howto applies to each regime.
// Deterministic per (seed, sizes); std::invalid_argument when an evaluation set is larger
// than the distinct prompts the world holds.
DemoData make_demo_data_v3(uint64_t seed, const DataSizes& sizes);

// The topic task's instruction and its eight code names (the answers).
const std::string& topic_instruction();
const std::vector<std::string>& topic_code_names();

// The word every code name shares ("and", the second word of each): the stress world
// forces its token into the safety tokens.
const std::string& code_name_shared_word();

// Every refusal of the "many" regime, the compliance starts of the chat model, and the
// starts only the attacker's fine-tuning answers use.
std::vector<std::string> many_refusal_phrasings();
const std::vector<std::string>& compliance_starts();
const std::vector<std::string>& unseen_compliance_starts();

// The phrasing family used only for evaluation (each with one "{}").
const std::vector<std::string>& evaluation_only_templates();

}  // namespace safetune::demo
