// Records -> token ids with loss labels.
//
// An Example is the prompt (rendered by the chat template with the generation prompt on)
// followed by the response and the template's end-of-turn text. Labels follow the HF
// convention: aligned with input_ids (the loss shifts them), -100 on prompt tokens.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "safetune/data/records.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"

namespace safetune::data {

constexpr int32_t kIgnoreIndex = -100;

struct Example {
  std::vector<int32_t> input_ids;  // prompt ids, then response ids
  std::vector<int32_t> labels;     // kIgnoreIndex on the prompt, the ids on the response
  int64_t response_start = 0;      // index of the first response token in input_ids
  // PACT's post-only context: BOS (when the tokenizer has one) + the assistant header,
  // then the same response ids; post_response_start indexes the first response token.
  std::vector<int32_t> post_ids;
  int64_t post_response_start = 0;
  int64_t truncated = 0;  // response tokens cut to fit max_length
  int64_t index = 0;      // position of the source record
};

// Tokenizes one record. A prompt leaving no room for one response token within
// max_length is an InputError naming the record's file:line; a long response is cut
// at the tail (Example::truncated says by how much).
Example tokenize_example(const Record& record, const text::Tokenizer& tok, const text::ChatTemplate& tmpl,
                         int64_t max_length);

// All records; logs "truncated N of M examples, K tokens" when anything was cut.
std::vector<Example> tokenize_records(const std::vector<Record>& records, const text::Tokenizer& tok,
                                      const text::ChatTemplate& tmpl, int64_t max_length);

}  // namespace safetune::data
