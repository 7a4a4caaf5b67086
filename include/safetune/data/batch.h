// Examples -> padded batches, in a deterministic, epoch-aware order.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <vector>

#include "safetune/data/example.h"
#include "safetune/text/tokenizer.h"

namespace safetune::data {

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

// The batch's tensors on `device` (the same tensors, no copy, when already there).
Batch to_device(const Batch& batch, const c10::Device& device);

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
