// CUDA kernels of the fused loss: cross-entropy straight from a chunk of logits with the
// gradient written over them, and the safety-column terms (PACT's weighted subset KL, the
// anchor) on the columns S. Plain C++ over raw device pointers: no torch here, so the
// kernels build with nvcc alone and the test program needs nothing else.
//
// How the fused op uses them on one chunk of rows (logits z = h W^T in bf16, [n, V]):
//   cross-entropy only:  cross_entropy_rows(write_grad)             one kernel, two reads
//                        of each row and one write (llm.c's fused classifier)
//   with pact:           subset_kl_rows (reads z[:, S], writes its [n, K] gradient)
//                        cross_entropy_rows(write_grad)  (z becomes dL/dz)
//                        add_subset_grad (adds the [n, K] gradient into the columns S)
//   with anchor:         cross_entropy_rows(lse only)   (the rows' logsumexp)
//                        anchor_rows (reads z[:, S], gives its [n, K] gradient and a
//                                     per-row coefficient on softmax(z))
//                        cross_entropy_rows(lse_in, row_coef, write_grad)
//                        add_subset_grad
//   with safety_mass:    as anchor, with safety_mass_rows in anchor_rows' place (T = 1)
// Then dL/dh = dz W and dL/dW = dz^T h are GEMMs of the caller.
//
// Inputs are bf16 logits; everything is accumulated in fp32; gradients of the logits are
// written back in bf16 (they replace the logits), the [n, K] subset gradients in fp32.
// Every function is asynchronous on `stream` and throws std::runtime_error on a launch
// error. Row r of a logits matrix starts at logits + r * ld (ld >= V).
#pragma once
#include <cstdint>

struct __nv_bfloat16;  // cuda_bf16.h
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;  // cuda_runtime_api.h

namespace safetune::cuda {

// Online-softmax cross-entropy over the rows of a logits chunk, one block per row walking
// the vocabulary in tiles. Per row r with target t (not ignore_index):
//   loss_r = lse_r - z[r, t],  lse_r = log sum_i exp(z[r, i])
// and when write_grad, z[r, :] is overwritten by
//   dL/dz[r, i] = softmax(z_r)_i * (c_r + row_coef_r) - c_r * [i == t]
// with c_r = grad_scale on counted rows and 0 on ignored ones (row_coef: 0 when absent).
struct CrossEntropyRows {
  __nv_bfloat16* logits = nullptr;   // [n, ld], first V columns used
  int64_t n = 0, V = 0, ld = 0;
  const int64_t* targets = nullptr;  // [n]; null: no cross-entropy term (c_r = 0)
  int64_t ignore_index = -100;
  float grad_scale = 1.f;            // e.g. dLoss / n_counted for a mean
  const float* lse_in = nullptr;     // [n] optional: the rows' logsumexp, already known (one read saved)
  const float* row_coef = nullptr;   // [n] optional: extra coefficient on softmax (anchor)
  float* losses = nullptr;           // [n] optional out: loss_r, 0 on ignored rows
  float* lse_out = nullptr;          // [n] optional out
  bool write_grad = true;            // false: only losses / lse, the logits stay
};
void cross_entropy_rows(const CrossEntropyRows& a, cudaStream_t stream);

// PACT's weighted subset KL with a fixed reference (the gate's mix already applied), per
// constrained row r (valid[r] != 0), over the K safety columns:
//   q_j  = softmax(z_ref[r] / T)_j * w_j, renormalised over S
//   p_j  = softmax(z_theta[r, S] / T)_j
//   loss_r = T^2 * sum_j q_j (log q_j - log p_j)        (0 log 0 = 0)
//   grad[r, j] = grad_scale * T * (p_j * sum_k q_k - q_j)   = grad_scale * dloss_r / dz_theta[r, S_j]
// Rows that are not constrained get loss 0 and gradient 0.
struct SubsetKl {
  const __nv_bfloat16* z_theta = nullptr;  // row r, column S_j at z_theta[r * ld_theta + cols[j]]
  int64_t ld_theta = 0;
  const int64_t* cols = nullptr;           // [K] column ids S; null: columns 0..K-1
  const float* z_ref = nullptr;            // [n, ld_ref] reference logits on S
  int64_t ld_ref = 0;
  const float* w = nullptr;                // [K] weights >= 0
  const uint8_t* valid = nullptr;          // [n] optional (null: every row)
  int64_t n = 0, K = 0;
  float temperature = 1.f;
  float grad_scale = 1.f;                  // e.g. lambda / n_constrained
  float* losses = nullptr;                 // [n] out
  float* grad = nullptr;                   // [n, K] out (fp32, contiguous)
};
void subset_kl_rows(const SubsetKl& a, cudaStream_t stream);

// The anchor term per constrained row r over S, with log p = log_softmax of the WHOLE row
// at temperature 1 (lse_theta given):
//   a_j = (z_theta[r, S_j] - lse_theta[r]) - logp_ref[r, j],   loss_r = sum_j a_j^2
//   grad[r, j] = 2 grad_scale a_j,  row_coef[r] = -2 grad_scale sum_j a_j
// so that dloss_r/dz[r, i] (times grad_scale) = grad[r, j] [i = S_j] + row_coef[r] softmax(z_r)_i,
// which cross_entropy_rows (row_coef) and add_subset_grad assemble. grad_scale is normally
// lambda / (n_constrained * K) (the mean over rows and columns).
struct AnchorRows {
  const __nv_bfloat16* z_theta = nullptr;
  int64_t ld_theta = 0;
  const int64_t* cols = nullptr;           // [K]; null: columns 0..K-1
  const float* lse_theta = nullptr;        // [n]
  const float* logp_ref = nullptr;         // [n, ld_ref] reference log-probabilities on S
  int64_t ld_ref = 0;
  const uint8_t* valid = nullptr;          // [n] optional
  int64_t n = 0, K = 0;
  float grad_scale = 1.f;
  float* losses = nullptr;                 // [n] out
  float* grad = nullptr;                   // [n, K] out (fp32, contiguous)
  float* row_coef = nullptr;               // [n] out
};
void anchor_rows(const AnchorRows& a, cudaStream_t stream);

// The |S|+1 bucket KL per constrained row r at temperature 1 (lse_theta given), against
// the reference's buckets a[r, j] on S and a_rest[r]:
//   log p_j = z_theta[r, S_j] - lse_theta[r],  p_S = sum_j p_j,  p_R = 1 - p_S = -expm1(log p_S)
//   P_R = max(p_R, rest_floor), A_R = max(a_R, rest_floor)
//   loss_r = sum_j a_j (log a_j - log p_j) + a_R log(A_R / P_R)        (0 log 0 = 0)
//   mass_r = a_S (log a_S - log p_S) + a_R log(A_R / P_R)               (a_S = sum_j a_j)
//   c = 1 - A_R / P_R,  grad[r, j] = grad_scale (p_j (1 - c) - a_j),  row_coef[r] = grad_scale c
// so that grad_scale * dloss_r/dz[r, i] = grad[r, j] [i = S_j] + row_coef[r] softmax(z_r)_i
// (assembled by cross_entropy_rows' row_coef and add_subset_grad, as for the anchor).
struct SafetyMassRows {
  const __nv_bfloat16* z_theta = nullptr;
  int64_t ld_theta = 0;
  const int64_t* cols = nullptr;           // [K]; null: columns 0..K-1
  const float* lse_theta = nullptr;        // [n]
  const float* a = nullptr;                // [n, ld_ref] the reference's probabilities on S
  int64_t ld_ref = 0;
  const float* a_rest = nullptr;           // [n] the reference's rest mass
  const uint8_t* valid = nullptr;          // [n] optional
  int64_t n = 0, K = 0;
  float grad_scale = 1.f;                  // e.g. lambda / n_response_rows
  float rest_floor = 1e-6f;
  float* losses = nullptr;                 // [n] out
  float* mass_terms = nullptr;             // [n] out
  float* grad = nullptr;                   // [n, K] out (fp32, contiguous)
  float* row_coef = nullptr;               // [n] out
};
void safety_mass_rows(const SafetyMassRows& a, cudaStream_t stream);

// grad_rows[r * ld + cols[j]] += g[r * K + j] (sum in fp32, stored in bf16). The columns
// must be distinct (they are: S is a set).
void add_subset_grad(__nv_bfloat16* grad_rows, int64_t ld, const int64_t* cols, const float* g, int64_t n, int64_t K,
                     cudaStream_t stream);

}  // namespace safetune::cuda
