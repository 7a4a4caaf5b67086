// Records -> token ids with loss labels -> padded batches.
//
// An Example is the prompt (rendered by the chat template with the generation prompt on)
// followed by the response and the template's end-of-turn text. Labels follow the HF
// convention: aligned with input_ids (the loss shifts them), -100 on prompt tokens.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

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

// Pad id for batches: the tokenizer's pad, else its eos, else 0. Padded positions are
// masked out (attention 0, label -100), so the value only has to be a valid id.
int32_t pad_id_for(const text::Tokenizer& tok);

// int64 tensors, right padded to the longest row.
struct Batch {
  at::Tensor input_ids;            // [B, T]
  at::Tensor attention_mask;       // [B, T] 1 on tokens, 0 on padding
  at::Tensor labels;               // [B, T] -100 on prompt and padding
  at::Tensor response_start;       // [B]
  at::Tensor lengths;              // [B] unpadded lengths
  at::Tensor post_ids;             // [B, P] post-only context (see Example)
  at::Tensor post_attention_mask;  // [B, P]
  at::Tensor post_response_start;  // [B]
  std::vector<int64_t> indices;    // which examples, in row order
};

Batch collate(const std::vector<const Example*>& rows, int32_t pad_id);

// The order of n examples in epoch `epoch`: a Fisher-Yates shuffle driven by
// std::mt19937_64 seeded from (seed, epoch) with our own bounded draw, so the order is
// the same on every platform and standard library, and any epoch can be recomputed
// (resuming mid-epoch needs only (epoch, step)). shuffle=false gives 0..n-1.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle = true);

// Fixed-size batches over a list of examples, epoch after epoch.
class Batcher {
 public:
  Batcher(const std::vector<Example>& examples, int64_t batch_size, uint64_t seed, bool shuffle = true,
          bool drop_last = false, int32_t pad_id = 0);
  int64_t steps_per_epoch() const;
  // Batch `step` (0-based) of epoch `epoch`.
  Batch batch(int64_t epoch, int64_t step) const;
  // The example indices of that batch.
  std::vector<int64_t> batch_indices(int64_t epoch, int64_t step) const;

 private:
  const std::vector<Example>& examples_;
  int64_t batch_size_;
  uint64_t seed_;
  bool shuffle_, drop_last_;
  int32_t pad_id_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> order_;
};

}  // namespace safetune::data
