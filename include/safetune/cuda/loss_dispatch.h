// Tensor-level entry points of the fused-loss kernels (include/safetune/cuda/loss_kernels.h).
//
// Each function runs the CUDA kernel when this build has them (LibTorch with CUDA and nvcc
// found), the tensors are on a CUDA device and the logits are bf16; otherwise the same
// arithmetic as a composition of torch ops in fp32 (any device, any float dtype), which is
// also what the kernels are checked against on CPU-only machines. The semantics, per row r
// of a logits chunk z [n, V] (row stride may exceed V; columns contiguous):
//
//   cross_entropy_rows_   loss_r = lse_r - z[r, t_r] (0 where t_r = ignore_index); when
//                         write_grad, z is overwritten by
//                         softmax(z_r) * (c_r + row_coef_r) - c_r * onehot(t_r),
//                         c_r = grad_scale on counted rows, 0 on ignored ones
//   subset_kl_rows        PACT's weighted subset KL on the columns S against a fixed
//                         reference: losses [n] (T^2 KL, 0 on rows not valid) and
//                         grad [n, K] = grad_scale * dloss_r / dz[r, S]
//   anchor_rows           sum over S of (log p_theta - log p_ref)^2 per row (log p over the
//                         whole row, lse given): losses [n], grad [n, K] (sparse part) and
//                         row_coef [n] (dense part: coefficient on softmax(z_r)), both
//                         times grad_scale
//   safety_mass_rows      the |S|+1 bucket KL at temperature 1 (lse given) against the
//                         reference's buckets a [n, K], a_rest [n]: losses [n], mass
//                         terms [n], grad [n, K] (sparse part) and row_coef [n] (dense
//                         part), both times grad_scale
//   add_subset_grad_      grad_rows[:, S] += grad
// See constraints.h for the loss definitions.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace safetune::cuda {

// True when the CUDA kernels are compiled into this build.
bool kernels_built();

// True when the kernels (not the torch fallback) would run for these logits.
bool kernels_apply(const at::Tensor& logits);

struct CrossEntropyRowsResult {
  at::Tensor losses;  // [n] fp32
  at::Tensor lse;     // [n] fp32
};

// logits [n, V] is modified in place when write_grad. targets [n] int64 (undefined: no
// cross-entropy term, only the row_coef part of the gradient). lse_in / row_coef: [n]
// fp32, optional.
CrossEntropyRowsResult cross_entropy_rows_(const at::Tensor& logits, const at::Tensor& targets, double grad_scale,
                                           int64_t ignore_index, const at::Tensor& lse_in = {},
                                           const at::Tensor& row_coef = {}, bool write_grad = true);

struct SubsetTermResult {
  at::Tensor losses;    // [n] fp32
  at::Tensor grad;      // [n, K] fp32
  at::Tensor row_coef;  // [n] fp32 (anchor only)
};

// logits [n, V] (read only); cols [K] int64 (the safety columns S); z_ref [n, K] reference
// logits on S (after the gate's mix); w [K] weights >= 0; valid [n] bool (undefined: all).
SubsetTermResult subset_kl_rows(const at::Tensor& logits, const at::Tensor& cols, const at::Tensor& z_ref,
                                const at::Tensor& w, const at::Tensor& valid, double temperature,
                                double grad_scale);

// lse [n]: logsumexp of each whole row (cross_entropy_rows_ with write_grad = false);
// logp_ref [n, K]: the reference's log-probabilities on S over its whole vocabulary.
SubsetTermResult anchor_rows(const at::Tensor& logits, const at::Tensor& cols, const at::Tensor& lse,
                             const at::Tensor& logp_ref, const at::Tensor& valid, double grad_scale);

struct SafetyMassRowsResult {
  at::Tensor losses;      // [n] fp32: sum_j a_j log(a_j / p_j) + a_R log(a_R / p_R)
  at::Tensor mass_terms;  // [n] fp32: a_S log(a_S / p_S) + a_R log(a_R / p_R)
  at::Tensor grad;        // [n, K] fp32
  at::Tensor row_coef;    // [n] fp32
};
// logits [n, V] (read only), cols [K], lse [n] (the rows' logsumexp), a [n, K] and
// a_rest [n] (the reference's buckets, fp32), valid [n] bool (undefined: all). p_R is
// 1 - p_S from log-sum-exps (-expm1), floored with a_R at rest_floor (loss::kRestFloor).
SafetyMassRowsResult safety_mass_rows(const at::Tensor& logits, const at::Tensor& cols, const at::Tensor& lse,
                                      const at::Tensor& a, const at::Tensor& a_rest, const at::Tensor& valid,
                                      double rest_floor, double grad_scale);

// grad_rows [n, V] += grad [n, K] on the columns cols (distinct), in place.
void add_subset_grad_(const at::Tensor& grad_rows, const at::Tensor& cols, const at::Tensor& grad);

}  // namespace safetune::cuda
