// Padded batches and a deterministic, epoch-aware example order (see batch.h).
#include "safetune/data/batch.h"

#include <torch/torch.h>

#include <algorithm>
#include <random>

#include "safetune/core/error.h"

namespace safetune::data {
namespace {

// splitmix64: spreads (seed, epoch) over the whole 64-bit seed space, so that nearby
// seeds and epochs give unrelated generator states.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform integer in [0, n) by rejection: std::uniform_int_distribution is
// implementation-defined, and the order must not depend on the standard library.
uint64_t bounded(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = (0 - n) % n;  // 2^64 mod n: draws below it would bias the modulo
  for (;;) {
    uint64_t r = rng();
    if (r >= limit) return r % n;
  }
}

// Rows of int32 ids -> right-padded int64 [B, T] ids and mask.
void pad_rows(const std::vector<const std::vector<int32_t>*>& rows, int64_t pad, at::Tensor& ids, at::Tensor& mask) {
  int64_t T = 0;
  for (auto* r : rows) T = std::max<int64_t>(T, r->size());
  const int64_t B = rows.size();
  ids = torch::full({B, T}, pad, torch::kInt64);
  mask = torch::zeros({B, T}, torch::kInt64);
  auto ia = ids.accessor<int64_t, 2>();
  auto ma = mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < rows[b]->size(); ++t) {
      ia[b][t] = (*rows[b])[t];
      ma[b][t] = 1;
    }
}

}  // namespace

int32_t pad_id_for(const text::Tokenizer& tok) {
  if (tok.pad_id) return *tok.pad_id;
  if (tok.eos_id) return *tok.eos_id;
  return 0;
}

Batch collate(const std::vector<const Example*>& rows, int32_t pad_id) {
  if (rows.empty()) throw std::invalid_argument("collate: no rows");
  Batch b;
  std::vector<const std::vector<int32_t>*> ids, labels, post;
  for (const Example* e : rows) {
    ids.push_back(&e->input_ids);
    labels.push_back(&e->labels);
    post.push_back(&e->post_ids);
    b.indices.push_back(e->index);
  }
  pad_rows(ids, pad_id, b.input_ids, b.attention_mask);
  at::Tensor unused;
  pad_rows(labels, kIgnoreIndex, b.labels, unused);
  pad_rows(post, pad_id, b.post_ids, b.post_attention_mask);
  const int64_t B = rows.size();
  b.response_start = torch::empty({B}, torch::kInt64);
  b.lengths = torch::empty({B}, torch::kInt64);
  b.post_response_start = torch::empty({B}, torch::kInt64);
  for (int64_t i = 0; i < B; ++i) {
    b.response_start[i] = rows[i]->response_start;
    b.lengths[i] = static_cast<int64_t>(rows[i]->input_ids.size());
    b.post_response_start[i] = rows[i]->post_response_start;
  }
  return b;
}

Batch to_device(const Batch& batch, const c10::Device& device) {
  Batch b = batch;
  for (at::Tensor* t : {&b.input_ids, &b.attention_mask, &b.labels, &b.response_start, &b.lengths, &b.post_ids,
                        &b.post_attention_mask, &b.post_response_start})
    if (t->defined()) *t = t->to(device);
  return b;
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (!shuffle || n < 2) return order;
  std::mt19937_64 rng(splitmix64(seed ^ splitmix64(static_cast<uint64_t>(epoch))));
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[bounded(rng, static_cast<uint64_t>(i) + 1)]);
  return order;
}

Batcher::Batcher(const std::vector<Example>& examples, int64_t batch_size, uint64_t seed, bool shuffle,
                 bool drop_last, int32_t pad_id)
    : examples_(examples), batch_size_(batch_size), seed_(seed), shuffle_(shuffle), drop_last_(drop_last),
      pad_id_(pad_id) {
  if (batch_size <= 0) input_error("batch_size", "must be positive, got " + std::to_string(batch_size));
  if (examples.empty()) input_error("dataset", "no examples to batch");
  if (drop_last && static_cast<int64_t>(examples.size()) < batch_size)
    input_error("batch_size", std::to_string(batch_size) + " is larger than the dataset (" +
                                  std::to_string(examples.size()) + " examples) with drop_last");
}

int64_t Batcher::steps_per_epoch() const {
  const int64_t n = examples_.size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

std::vector<int64_t> Batcher::batch_indices(int64_t epoch, int64_t step) const {
  if (step < 0 || step >= steps_per_epoch())
    throw std::out_of_range("Batcher: step " + std::to_string(step) + " outside epoch of " +
                            std::to_string(steps_per_epoch()));
  if (cached_epoch_ != epoch) {
    order_ = epoch_order(examples_.size(), seed_, epoch, shuffle_);
    cached_epoch_ = epoch;
  }
  const int64_t begin = step * batch_size_;
  const int64_t end = std::min<int64_t>(begin + batch_size_, order_.size());
  return std::vector<int64_t>(order_.begin() + begin, order_.begin() + end);
}

Batch Batcher::batch(int64_t epoch, int64_t step) const {
  std::vector<const Example*> rows;
  for (int64_t i : batch_indices(epoch, step)) rows.push_back(&examples_[i]);
  return collate(rows, pad_id_);
}

}  // namespace safetune::data
