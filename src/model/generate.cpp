// Generation loop. Prompts are left-padded so that every row's last prompt token sits in
// the same column; positions come from the mask (cumsum - 1), so padding does not shift
// them. One prefill call fills the KV cache; then one token per row per step.
#include "safetune/model/generate.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>

#include "safetune/core/error.h"
#include "safetune/model/transformer.h"

namespace safetune::model {

at::Tensor sample_next(const at::Tensor& logits, double temperature, double top_p, at::Generator& gen) {
  if (temperature <= 0) return logits.argmax(-1);
  at::Tensor probs = at::softmax(logits.to(at::kFloat) / temperature, -1);
  if (top_p < 1.0) {
    // HF TopPLogitsWarper: drop the least likely tokens whose total mass is <= 1 - top_p,
    // i.e. keep a token while the mass of the more likely ones is still < top_p.
    auto sorted = probs.sort(-1, /*descending=*/true);
    at::Tensor sp = std::get<0>(sorted), idx = std::get<1>(sorted);
    at::Tensor before = sp.cumsum(-1) - sp;
    at::Tensor drop = before >= top_p;
    drop.select(-1, 0).fill_(false);  // always keep the most likely token
    sp = sp.masked_fill(drop, 0.0);
    probs = at::zeros_like(probs).scatter_(-1, idx, sp);
  }
  return at::multinomial(probs, 1, /*replacement=*/false, gen).squeeze(-1);
}

GenerateOptions generate_options(int64_t max_new_tokens, double temperature, double top_p, uint64_t seed,
                                 std::vector<int64_t> eos_ids, int64_t pad_id) {
  GenerateOptions o;
  o.max_new_tokens = max_new_tokens;
  o.temperature = temperature;
  o.top_p = top_p;
  o.seed = seed;
  o.eos_ids = std::move(eos_ids);
  o.pad_id = pad_id;
  return o;
}

std::vector<std::vector<int64_t>> generate(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerateOptions& opts) {
  at::NoGradGuard no_grad;
  const int64_t B = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int64_t>> out(B);
  if (B == 0 || opts.max_new_tokens <= 0) return out;
  if (opts.top_p <= 0 || opts.top_p > 1) throw InputError("top_p must be in (0, 1]");
  const int64_t V = model.config().vocab_size;
  int64_t L = 0;
  for (const auto& p : prompts) {
    if (p.empty()) throw InputError("generate: empty prompt");
    for (int64_t id : p)
      if (id < 0 || id >= V) throw InputError("generate: token id " + std::to_string(id) + " outside the vocabulary [0, " + std::to_string(V) + ")");
    L = std::max<int64_t>(L, p.size());
  }

  // Left-padded prompt batch.
  at::Tensor ids = at::full({B, L}, opts.pad_id, at::kLong);
  at::Tensor mask = at::zeros({B, L}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = prompts[b].size();
    ids[b].narrow(0, L - n, n).copy_(at::tensor(prompts[b], at::kLong));
    mask[b].narrow(0, L - n, n).fill_(1);
  }

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed);
  std::unique_ptr<KVCache> cache;
  const c10::Device dev = model.device();
  at::Tensor hidden;
  if (opts.use_cache) {
    cache = std::make_unique<KVCache>(model.config(), B, L + opts.max_new_tokens,
                                      at::TensorOptions().dtype(model.dtype()).device(dev));
    hidden = model.forward(ids, mask, cache.get());
  } else {
    hidden = model.forward(ids, mask);
  }

  std::vector<bool> done(B, false);
  int64_t n_done = 0;
  for (int64_t step = 0; step < opts.max_new_tokens; ++step) {
    at::Tensor last = model.logits(hidden.select(1, hidden.size(1) - 1)).to(at::kCPU).to(at::kFloat);  // [B,V]
    at::Tensor next = sample_next(last, opts.temperature, opts.top_p, gen).to(at::kLong).contiguous();
    auto* np = next.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) {
        np[b] = opts.pad_id;
        continue;
      }
      out[b].push_back(np[b]);
      if (std::find(opts.eos_ids.begin(), opts.eos_ids.end(), np[b]) != opts.eos_ids.end()) {
        done[b] = true;
        ++n_done;
      }
    }
    if (n_done == B || step + 1 == opts.max_new_tokens) break;
    at::Tensor step_ids = next.view({B, 1});
    if (opts.use_cache) {
      hidden = model.forward(step_ids, {}, cache.get());
    } else {
      ids = at::cat({ids, step_ids}, 1);
      mask = at::cat({mask, at::ones({B, 1}, at::kLong)}, 1);
      hidden = model.forward(ids, mask);
    }
  }
  return out;
}

}  // namespace safetune::model
