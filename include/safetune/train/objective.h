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

struct LossTerms {
  at::Tensor total;                                    // what backward() is called on
  std::vector<std::pair<std::string, at::Tensor>> terms;  // "ce", ... (for metrics)
};

// Checks that `cfg` names an objective this build implements (InputError otherwise).
void check_objective(const ObjectiveConfig& cfg);

// Labels shifted for next-token prediction: position t is trained on labels[t + 1], the
// last position on nothing (-100). [B,T] int64.
at::Tensor shift_labels(const at::Tensor& labels);

// Trained tokens of a batch (labels that are not -100, after the shift).
int64_t trained_tokens(const data::Batch& batch);

// Forward pass and loss terms of one micro-batch.
LossTerms compute_objective(const ObjectiveConfig& cfg, model::Transformer& model, const data::Batch& batch);

}  // namespace safetune::train
