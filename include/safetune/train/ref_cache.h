// The reference cache: `safetune ref-cache CONFIG.yaml --out FILE` runs the frozen
// reference (the base model of model.path, no adapters) once over every training example
// and stores its logits on the safety-token columns S at every response position, from
// the full context and from the post-only context, so that training with
// objective.reference=cache needs no reference forward passes at all.
//
// File: safetensors, written atomically, values fp32 (log-sum-exps fp64):
//   offsets  I64 [E + 1]   rows offsets[e] .. offsets[e+1] belong to example e (the
//                          run's example index, i.e. the order of its selected records)
//   z_full   F32 [N, K]    full-context logits on S, response positions in order
//   z_post   F32 [N, K]    post-only-context logits on S
//   mass     F32 [N]       softmax mass on S over the whole vocabulary (positions = probe)
//   lse_full F64 [N]       log-sum-exp over the whole vocabulary of full-context logits / T
//   lse_post F64 [N]       the same, post-only context (safety_mass's absolute probabilities)
//   S        I64 [K]       the columns, in tokens.json order
// metadata: format "safetune.ref_cache.v2", lse_temperature (T of the log-sum-exps: the
// config's objective.temperature) and the sha256 of what the values depend on:
//   model_hash      model.path's config.json + weights (safety::model_hash) and model.dtype
//   data_hash       the dataset file(s) and the record selection (num_examples,
//                   harmful_fraction, data.seed)
//   tokenizer_hash  the tokenizer files, the chat template, data.max_length
//   tokens_hash     tokens.json
// At training time the hashes are recomputed from the run's config; any difference is an
// InputError naming the hash that differs. Full-vocabulary constraints (kl_full, anchor)
// cannot use a cache. A v1 cache (no log-sum-exps) still serves the constraints that need
// none; for one that does (safety_mass) it is refused by name, as is a v2 cache whose
// lse_temperature is not the run's objective.temperature.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "safetune/train/config.h"

namespace safetune::train {

class Reference;

struct RefCacheHashes {
  std::string model, data, tokenizer, tokens;
  std::map<std::string, std::string> as_metadata() const;
};

// The hashes of the inputs `cfg` names (InputError for a missing file).
RefCacheHashes ref_cache_hashes(const RunConfig& cfg);

struct RefCacheInfo {
  int64_t examples = 0;
  int64_t positions = 0;
  int64_t columns = 0;
};

// Computes and writes the cache. `progress(done, total)` after each batch.
RefCacheInfo build_ref_cache(const RunConfig& cfg, const std::string& out,
                             const std::function<void(int64_t, int64_t)>& progress = {});

// Opens cfg.objective.ref_cache, checks format, hashes and S, and returns a reference
// that serves its rows. InputError naming the file and the differing hash.
std::unique_ptr<Reference> load_ref_cache(const RunConfig& cfg, const at::Tensor& S);

}  // namespace safetune::train
