// One record -> one Example: prompt ids with labels -100, then the trained response.
//
// The prompt (chat template with the generation prompt on) and the response (+ the
// end-of-turn text) are tokenized separately and concatenated, so response_start is
// exact by construction. HF's apply_chat_template on the whole conversation tokenizes
// one string instead; the two agree wherever the tokenizer cannot merge across the
// boundary, which holds for the chat families here: their prompts end in a special token
// or a newline (llama3, chatml, gemma), or in "[/INST]" followed by the SentencePiece
// word-start "▁" of the response (llama2, mistral). They can differ for the plain format,
// where "Assistant: " + "Sure" would be one " Sure" token in a single string; there the
// separate tokenization is also how the probe model sees the response in PACT's step 1.
#include "safetune/data/example.h"

#include "safetune/core/log.h"

#include "safetune/core/error.h"

namespace safetune::data {

Example tokenize_example(const Record& record, const text::Tokenizer& tok, const text::ChatTemplate& tmpl,
                         int64_t max_length) {
  using Family = text::ChatTemplate::Family;
  if (max_length < 2) input_error("max_length", "must be at least 2, got " + std::to_string(max_length));

  std::string prompt_text;
  try {
    prompt_text = tmpl.render(record.prompt, /*add_generation_prompt=*/true);
  } catch (const InputError& e) {
    input_error(record.where, e.what());
  }
  // Chat templates write their BOS text themselves; the plain probe format is tokenized
  // the way a base model's tokenizer does by default, BOS first.
  std::vector<int32_t> prompt_ids = tok.encode(prompt_text, /*add_bos=*/tmpl.family() == Family::kPlain);

  // llama2 / mistral write " " before the reply ("[/INST] answer"). SentencePiece-style
  // tokenizers mark a word start with "▁" at the start of the text they encode, which
  // is that space; a byte-level BPE tokenizer needs the space written out.
  std::string prefix = tmpl.response_prefix();
  if (!prefix.empty() && tok.kind() != "bpe") prefix.clear();
  std::vector<int32_t> response_ids =
      tok.encode(prefix + tmpl.format_response(record.response) + tmpl.end_of_turn(), /*add_bos=*/false);
  // A format without an end-of-turn marker (plain) ends the response with EOS instead.
  if (tmpl.end_of_turn().empty() && tok.eos_id) response_ids.push_back(*tok.eos_id);
  if (response_ids.empty()) input_error(record.where, "empty response: nothing to train on");

  const int64_t n_prompt = static_cast<int64_t>(prompt_ids.size());
  if (n_prompt >= max_length)
    input_error(record.where, "prompt is " + std::to_string(n_prompt) + " tokens; max_length " +
                                  std::to_string(max_length) + " leaves no room for the response");

  Example ex;
  const int64_t room = max_length - n_prompt;
  if (static_cast<int64_t>(response_ids.size()) > room) {
    ex.truncated = static_cast<int64_t>(response_ids.size()) - room;
    response_ids.resize(room);
  }

  ex.response_start = n_prompt;
  ex.input_ids = prompt_ids;
  ex.input_ids.insert(ex.input_ids.end(), response_ids.begin(), response_ids.end());
  ex.labels.assign(prompt_ids.size(), kIgnoreIndex);
  ex.labels.insert(ex.labels.end(), response_ids.begin(), response_ids.end());

  // Post-only context: the assistant header with no system or user text before it.
  if (tok.bos_id) ex.post_ids.push_back(*tok.bos_id);
  std::vector<int32_t> header = tok.encode(tmpl.assistant_header(), /*add_bos=*/false);
  ex.post_ids.insert(ex.post_ids.end(), header.begin(), header.end());
  ex.post_response_start = static_cast<int64_t>(ex.post_ids.size());
  ex.post_ids.insert(ex.post_ids.end(), response_ids.begin(), response_ids.end());
  return ex;
}

std::vector<Example> tokenize_records(const std::vector<Record>& records, const text::Tokenizer& tok,
                                      const text::ChatTemplate& tmpl, int64_t max_length) {
  std::vector<Example> out;
  out.reserve(records.size());
  int64_t cut_examples = 0, cut_tokens = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    Example ex = tokenize_example(records[i], tok, tmpl, max_length);
    ex.index = static_cast<int64_t>(i);
    if (ex.truncated > 0) {
      ++cut_examples;
      cut_tokens += ex.truncated;
    }
    out.push_back(std::move(ex));
  }
  if (cut_examples > 0)
    log::info("truncated {} of {} examples, {} tokens (max_length {})", cut_examples, out.size(), cut_tokens,
                 max_length);
  return out;
}

}  // namespace safetune::data
