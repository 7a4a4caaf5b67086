// The training objective: loss = CE on response tokens (+ lambda x a safety constraint,
// the seam where constraints plug in). Each term is a scalar mean over the batch's
// trained tokens; the trainer weights micro-batches by their token counts.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "safetune/data/batch.h"
#include "safetune/model/transformer.h"
#include "safetune/train/config.h"

namespace safetune::train {

struct Constraint;  // reference.h

struct LossTerms {
  at::Tensor total;                                    // what backward() is called on
  std::vector<std::pair<std::string, at::Tensor>> terms;  // "ce", ... (for metrics)
};

// Checks the objective's settings that need no files (InputError otherwise): e.g. a
// reference cache with a full-vocabulary constraint.
void check_objective(const ObjectiveConfig& cfg);

// Labels shifted for next-token prediction: position t is trained on labels[t + 1], the
// last position on nothing (-100). [B,T] int64.
at::Tensor shift_labels(const at::Tensor& labels);

// Trained tokens of a batch (labels that are not -100, after the shift).
int64_t trained_tokens(const data::Batch& batch);

// Forward pass and loss terms of one micro-batch: "ce", then for a constraint its term
// ("pact", "kl_full" or "anchor", unweighted) and for pact "gate" (the mean gate value
// c_t over the constrained positions); total = ce + lambda x constraint. `constraint`
// (from setup_constraint) must be given when cfg.constraint is not none. The constraint
// reuses the policy's one forward pass: its hidden states at the response positions go
// through the lm_head rows of S only (pact), or the whole lm_head (kl_full, anchor).
// cfg.fused (default): CE and the constraint come from one chunked pass over the hidden
// states (loss/fused_objective.h), no [tokens x vocab] logits; the terms are then detached
// values and only `total` carries the gradient. cfg.fused = false: the separate ops.
LossTerms compute_objective(const ObjectiveConfig& cfg, model::Transformer& model, const data::Batch& batch,
                            Constraint* constraint = nullptr);

}  // namespace safetune::train
