// Evaluation suites: a JSON file naming one or more prompt sets and how to score each.
//
//   {
//     "sets": [
//       {"name": "advbench", "path": "harmful.jsonl", "kind": "safety", "limit": 100},
//       {"name": "sst2", "path": "sst2.jsonl", "kind": "exact_match", "label": "label"},
//       {"name": "agnews", "path": "ag.jsonl", "kind": "regex",
//        "regex": "(World|Sports|Business|Sci/Tech)", "label": "label"},
//       {"name": "gsm8k", "path": "gsm8k.jsonl", "kind": "final_number"},
//       {"name": "advbench", "path": "harmful_behaviors.csv", "kind": "safety",
//        "columns": {"prompt": "goal"}}
//     ],
//     "refusal_keywords": ["I'm sorry", ...]        optional; replaces the default list
//   }
//
// "path" is a JSON, JSONL, CSV or TSV prompt file ({prompt}, {instruction, input?, output?},
// {messages}); relative paths are resolved against the suite file's directory. "columns"
// maps fields to the file's columns ({"prompt": "goal"}, or the text "prompt=goal"; see
// data/columns.h). "label"
// names the record field holding the gold answer of a utility set; without it the
// record's output / completion / final assistant message is the label. "limit" keeps the
// first N prompts; "max_new_tokens" bounds this set's answers instead of the evaluation's
// setting (a one-word label needs few tokens, a refusal shows in its first words).
// Unknown keys, a missing field, an unknown kind, an invalid regex, a set without
// prompts, or a utility prompt without a label are InputErrors naming the suite file (or
// the prompt file and line) and the field.
#pragma once
#include <cstdint>
#include <regex>
#include <string>
#include <vector>

#include "safetune/data/records.h"

namespace safetune::eval {

enum class SetKind { kSafety, kExactMatch, kRegex, kFinalNumber };

// "safety", "exact_match", "regex", "final_number".
const char* set_kind_name(SetKind k);

struct PromptSet {
  std::string name, path;  // path resolved against the suite's directory
  SetKind kind = SetKind::kSafety;
  std::string label_field;  // empty: the record's response is the label
  data::ColumnMap columns;  // field -> column of the prompt file; empty = by name
  std::string regex_source;
  std::regex regex;         // compiled regex_source (kRegex)
  int64_t limit = -1;       // -1: all
  int64_t max_new_tokens = 0;  // the set's answer length; 0: the evaluation's
  std::vector<data::Record> records;  // read and limited
  std::vector<std::string> labels;    // gold answer per record (utility sets only)
};

struct Suite {
  std::string path;
  std::vector<PromptSet> sets;
  std::vector<std::string> refusal_keywords;  // the default list unless the suite gives one
};

// Reads the suite and every prompt file it names.
Suite load_suite(const std::string& path);

}  // namespace safetune::eval
