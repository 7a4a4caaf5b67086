// The training objective: loss = CE on response tokens + lambda x a safety constraint
// (loss/constraints.h) against a frozen reference (reference.h). Each term is a scalar mean
// over the batch's trained tokens; the trainer weights micro-batches by their token counts.
//
// The settings take one path: RunConfig.objective (validated by the config) ->
// setup_objective -> Objective.spec (loss::ObjectiveSpec: the constraint kind, lambda, the
// loss's own options, the safety-token columns S and weights w), fixed for the run; each
// micro-batch adds its own tensors (loss::ConstraintInputs: positions, reference logits).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "safetune/loss/fused_objective.h"
#include "safetune/train/config.h"
#include "safetune/train/reference.h"

namespace safetune::data {
struct Batch;
}
namespace safetune::model {
class Transformer;
}
namespace safetune::text {
class Tokenizer;
}

namespace safetune::train {

// Everything the objective needs, prepared once per run.
struct Objective {
  loss::ObjectiveSpec spec;
  bool fused = true;                     // objective.fused
  std::unique_ptr<Reference> reference;  // nullptr for constraint none
  ReferenceRequest request;              // what each micro-batch asks the reference for
};

// The loss's options from the run config: objective.temperature, positions / first_n /
// probe_tau, reference_mix and the gate (gate.enabled = false -> reference_mix full).
loss::ConstraintOptions constraint_options(const ObjectiveConfig& cfg);

// The objective of a (validated) run config for `policy`. With a constraint: reads
// tokens.json and checks it against the model's vocabulary, the tokenizer's pieces (when
// `tokenizer` is given) and the model's hash; w = max(v, 0), or ones for
// objective.target = reference; builds the reference. InputError for any bad input.
Objective setup_objective(const RunConfig& cfg, model::Transformer& policy, const text::Tokenizer* tokenizer);

struct LossTerms {
  at::Tensor total;                                       // what backward() is called on
  std::vector<std::pair<std::string, at::Tensor>> terms;  // "ce", ... (for metrics)
};

// Labels shifted for next-token prediction: position t is trained on labels[t + 1], the
// last position on nothing (-100). [B,T] int64.
at::Tensor shift_labels(const at::Tensor& labels);

// Trained tokens of a batch (labels that are not -100, after the shift).
int64_t trained_tokens(const data::Batch& batch);

// Forward pass and loss terms of one micro-batch: "ce", then for a constraint its term
// (named after it, unweighted) and for pact "gate" (the mean gate value c_t over the
// constrained positions); total = ce + lambda x constraint. The constraint reuses the
// policy's one forward pass: its hidden states at the response positions go through the
// lm_head rows of S only (pact), or the whole lm_head (kl_full, anchor).
// objective.fused (default): CE and the constraint come from one chunked pass over the
// hidden states (loss/fused_objective.h), no [tokens x vocab] logits; the terms are then
// detached values and only `total` carries the gradient. Otherwise the separate ops.
LossTerms compute_objective(const Objective& objective, model::Transformer& model, const data::Batch& batch);

}  // namespace safetune::train
