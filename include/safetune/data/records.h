// Training records read from a JSON array file, a JSONL file (one object per line), or a
// CSV / TSV file with a header row (*.csv, *.tsv; csv.h), chosen by the file's extension.
//
// Three shapes are accepted, detected per record by their keys:
//   {"instruction": ..., "input": ..., "output": ...}   Alpaca / PACT ("input" optional;
//        refusal data may have only "input" and "output")
//   {"messages": [{"role": ..., "content": ...}, ...]}   chat; the last message is the
//        assistant response, the earlier ones the prompt
//   {"prompt": ..., "completion": ...}
// Any other key (e.g. "label") is kept in Record::extra.
//
// A CSV/TSV row is read as the object of its named columns ({"instruction": <cell>, ...}),
// so a table with instruction,input,output (or prompt,completion) columns needs nothing
// else. A column mapping (columns.h) names the column behind each field instead, for CSV
// and JSON alike: {instruction: goal, output: target} reads AdvBench's goal,target file as
// instruction/output records. A mapped column missing from a CSV header, or a mapping (or
// header) that leaves the shape without a required field, is one InputError naming the
// file, the header line and the column.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "safetune/data/columns.h"
#include "safetune/text/chat_template.h"

namespace safetune::data {

struct Record {
  std::vector<text::Message> prompt;  // optional system, then user/assistant turns ending with user
  std::string response;               // the assistant reply to train on
  nlohmann::json extra = nlohmann::json::object();  // fields outside the shape
  std::string where;                  // "file:line" (JSONL; CSV: the line the row starts on) or
                                      // "file:record N" (JSON array, 1-based)
  bool has_response = true;           // false only for prompt-only records (read_prompt_records)
};

// Reads every record of `path`: InputError naming file:line (or record) for broken JSON,
// invalid UTF-8, a record without a response, an unknown shape, or an empty dataset.
std::vector<Record> read_records(const std::string& path, const ColumnMap& columns = {});

// Same, from text already in memory; `name` is used in error messages and its extension
// picks the format (.csv, .tsv; anything else is JSON or JSONL).
std::vector<Record> parse_records(std::string_view text, const std::string& name, const ColumnMap& columns = {});

// Prompts for evaluation: the same shapes, but the response is optional, so {"prompt"},
// {"instruction", "input"?} and {"messages"} ending with a user turn are accepted too
// (Record::has_response false, response empty). A response present is kept (e.g. as the
// label of a utility set). Same errors otherwise, an empty file included.
std::vector<Record> read_prompt_records(const std::string& path, const ColumnMap& columns = {});
std::vector<Record> parse_prompt_records(std::string_view text, const std::string& name,
                                         const ColumnMap& columns = {});

// Alpaca prompt text: instruction, then "\n\n" + input when input is non-empty.
std::string alpaca_prompt(const std::string& instruction, const std::string& input);

}  // namespace safetune::data
