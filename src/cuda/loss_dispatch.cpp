// Tensor-level dispatch of the fused-loss kernels: the CUDA kernels when they are built
// and the tensors are on the GPU in bf16, the same arithmetic in torch ops otherwise.
// Compiles against CPU-only LibTorch (SAFETUNE_CUDA_KERNELS undefined).
#include "safetune/cuda/loss_dispatch.h"

#include <ATen/ATen.h>

#ifdef SAFETUNE_CUDA_KERNELS
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "safetune/cuda/loss_kernels.h"
#endif

namespace safetune::cuda {
namespace {

void check_rows(const at::Tensor& logits, const char* where) {
  TORCH_CHECK(logits.dim() == 2 && logits.size(1) > 0 && logits.stride(1) == 1 && logits.stride(0) >= logits.size(1),
              where, ": logits must be [n, V] with contiguous columns");
}

// The logits' columns S as an [n, K] fp32 matrix.
at::Tensor subset_columns(const at::Tensor& logits, const at::Tensor& cols) {
  return logits.index_select(1, cols.to(logits.device(), at::kLong)).to(at::kFloat);
}

// valid as [n, 1] fp32 (1 where constrained), all ones when undefined.
at::Tensor row_mask(const at::Tensor& valid, const at::Tensor& logits) {
  auto opts = logits.options().dtype(at::kFloat);
  if (!valid.defined()) return at::ones({logits.size(0), 1}, opts);
  TORCH_CHECK(valid.dim() == 1 && valid.size(0) == logits.size(0), "valid must be [n]");
  return valid.to(logits.device(), at::kFloat).unsqueeze(1);
}

#ifdef SAFETUNE_CUDA_KERNELS
__nv_bfloat16* bf16_ptr(const at::Tensor& t) { return reinterpret_cast<__nv_bfloat16*>(t.data_ptr<at::BFloat16>()); }
cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }
// Inputs as the kernels read them: contiguous, on the logits' device, of the given dtype.
at::Tensor dev(const at::Tensor& t, const at::Tensor& like, at::ScalarType dtype) {
  return t.to(like.device(), dtype).contiguous();
}
const uint8_t* valid_ptr(const at::Tensor& v) {
  return v.defined() ? reinterpret_cast<const uint8_t*>(v.data_ptr<bool>()) : nullptr;
}
#endif

}  // namespace

bool kernels_built() {
#ifdef SAFETUNE_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

bool kernels_apply(const at::Tensor& logits) {
  return kernels_built() && logits.defined() && logits.is_cuda() && logits.scalar_type() == at::kBFloat16;
}

CrossEntropyRowsResult cross_entropy_rows_(const at::Tensor& logits, const at::Tensor& targets, double grad_scale,
                                           int64_t ignore_index, const at::Tensor& lse_in, const at::Tensor& row_coef,
                                           bool write_grad) {
  at::NoGradGuard no_grad;
  check_rows(logits, "cross_entropy_rows_");
  const int64_t n = logits.size(0), V = logits.size(1);
  if (targets.defined()) {
    TORCH_CHECK(targets.numel() == n, "cross_entropy_rows_: ", targets.numel(), " targets for ", n, " rows");
    const at::Tensor bad = targets.ne(ignore_index) & (targets.lt(0) | targets.ge(V));
    TORCH_CHECK(!bad.any().item<bool>(), "cross_entropy_rows_: a target is outside [0, ", V, ")");
  }
  CrossEntropyRowsResult r;
  auto f32 = logits.options().dtype(at::kFloat);
#ifdef SAFETUNE_CUDA_KERNELS
  if (kernels_apply(logits)) {
    const c10::cuda::CUDAGuard guard(logits.device());
    at::Tensor t = targets.defined() ? dev(targets.reshape({-1}), logits, at::kLong) : at::Tensor();
    at::Tensor l_in = lse_in.defined() ? dev(lse_in, logits, at::kFloat) : at::Tensor();
    at::Tensor coef = row_coef.defined() ? dev(row_coef, logits, at::kFloat) : at::Tensor();
    r.losses = at::empty({n}, f32);
    r.lse = l_in.defined() ? l_in : at::empty({n}, f32);
    CrossEntropyRows a;
    a.logits = bf16_ptr(logits), a.n = n, a.V = V, a.ld = logits.stride(0);
    a.targets = t.defined() ? t.data_ptr<int64_t>() : nullptr;
    a.ignore_index = ignore_index, a.grad_scale = static_cast<float>(grad_scale);
    a.lse_in = l_in.defined() ? l_in.data_ptr<float>() : nullptr;
    a.row_coef = coef.defined() ? coef.data_ptr<float>() : nullptr;
    a.losses = r.losses.data_ptr<float>();
    a.lse_out = l_in.defined() ? nullptr : r.lse.data_ptr<float>();
    a.write_grad = write_grad;
    cross_entropy_rows(a, current_stream());
    return r;
  }
#endif
  const at::Tensor z = logits.to(at::kFloat);
  r.lse = lse_in.defined() ? lse_in.to(logits.device(), at::kFloat).reshape({n}) : z.logsumexp(1);
  at::Tensor counted = at::zeros({n}, f32), tc = at::zeros({n, 1}, logits.options().dtype(at::kLong));
  if (targets.defined()) {
    const at::Tensor t = targets.reshape({-1}).to(logits.device(), at::kLong);
    counted = t.ne(ignore_index).to(at::kFloat);
    tc = t.clamp(0, V - 1).unsqueeze(1);
  }
  r.losses = (r.lse - z.gather(1, tc).squeeze(1)) * counted;
  if (write_grad) {
    const at::Tensor c = (counted * grad_scale).unsqueeze(1);
    at::Tensor coef = c;
    if (row_coef.defined()) coef = coef + row_coef.to(logits.device(), at::kFloat).reshape({n, 1});
    at::Tensor g = (z - r.lse.unsqueeze(1)).exp_().mul_(coef);
    g.scatter_add_(1, tc, -c);
    logits.copy_(g);
  }
  return r;
}

SubsetTermResult subset_kl_rows(const at::Tensor& logits, const at::Tensor& cols, const at::Tensor& z_ref,
                                const at::Tensor& w, const at::Tensor& valid, double temperature,
                                double grad_scale) {
  at::NoGradGuard no_grad;
  check_rows(logits, "subset_kl_rows");
  const int64_t n = logits.size(0), K = cols.numel();
  TORCH_CHECK(K > 0 && z_ref.dim() == 2 && z_ref.size(0) == n && z_ref.size(1) == K && w.numel() == K,
              "subset_kl_rows: expected cols [K], z_ref [n, K], w [K]");
  TORCH_CHECK(temperature > 0, "subset_kl_rows: temperature must be positive");
  SubsetTermResult r;
#ifdef SAFETUNE_CUDA_KERNELS
  if (kernels_apply(logits)) {
    const c10::cuda::CUDAGuard guard(logits.device());
    auto f32 = logits.options().dtype(at::kFloat);
    const at::Tensor c = dev(cols, logits, at::kLong), zr = dev(z_ref, logits, at::kFloat),
                     wd = dev(w, logits, at::kFloat);
    const at::Tensor v = valid.defined() ? dev(valid, logits, at::kBool) : at::Tensor();
    r.losses = at::empty({n}, f32);
    r.grad = at::empty({n, K}, f32);
    SubsetKl a;
    a.z_theta = bf16_ptr(logits), a.ld_theta = logits.stride(0), a.cols = c.data_ptr<int64_t>();
    a.z_ref = zr.data_ptr<float>(), a.ld_ref = K, a.w = wd.data_ptr<float>(), a.valid = valid_ptr(v);
    a.n = n, a.K = K, a.temperature = static_cast<float>(temperature), a.grad_scale = static_cast<float>(grad_scale);
    a.losses = r.losses.data_ptr<float>(), a.grad = r.grad.data_ptr<float>();
    subset_kl_rows(a, current_stream());
    return r;
  }
#endif
  const double T = temperature;
  const at::Tensor zt = subset_columns(logits, cols) / T;
  const at::Tensor mask = row_mask(valid, logits);
  at::Tensor q = at::softmax(z_ref.to(logits.device(), at::kFloat) / T, 1) *
                 w.to(logits.device(), at::kFloat).reshape({1, K});
  const at::Tensor qs = q.sum(1, /*keepdim=*/true);
  q = at::where(qs > 0, q / qs.clamp_min(1e-30), at::zeros_like(q));  // every weight 0: q = 0
  const at::Tensor log_p = at::log_softmax(zt, 1);
  r.losses = ((at::xlogy(q, q) - q * log_p).sum(1) * (T * T)) * mask.squeeze(1);
  r.grad = (log_p.exp() * q.sum(1, true) - q) * (grad_scale * T) * mask;
  return r;
}

SubsetTermResult anchor_rows(const at::Tensor& logits, const at::Tensor& cols, const at::Tensor& lse,
                             const at::Tensor& logp_ref, const at::Tensor& valid, double grad_scale) {
  at::NoGradGuard no_grad;
  check_rows(logits, "anchor_rows");
  const int64_t n = logits.size(0), K = cols.numel();
  TORCH_CHECK(K > 0 && lse.numel() == n && logp_ref.dim() == 2 && logp_ref.size(0) == n && logp_ref.size(1) == K,
              "anchor_rows: expected cols [K], lse [n], logp_ref [n, K]");
  SubsetTermResult r;
#ifdef SAFETUNE_CUDA_KERNELS
  if (kernels_apply(logits)) {
    const c10::cuda::CUDAGuard guard(logits.device());
    auto f32 = logits.options().dtype(at::kFloat);
    const at::Tensor c = dev(cols, logits, at::kLong), l = dev(lse, logits, at::kFloat),
                     lr = dev(logp_ref, logits, at::kFloat);
    const at::Tensor v = valid.defined() ? dev(valid, logits, at::kBool) : at::Tensor();
    r.losses = at::empty({n}, f32);
    r.grad = at::empty({n, K}, f32);
    r.row_coef = at::empty({n}, f32);
    AnchorRows a;
    a.z_theta = bf16_ptr(logits), a.ld_theta = logits.stride(0), a.cols = c.data_ptr<int64_t>();
    a.lse_theta = l.data_ptr<float>(), a.logp_ref = lr.data_ptr<float>(), a.ld_ref = K, a.valid = valid_ptr(v);
    a.n = n, a.K = K, a.grad_scale = static_cast<float>(grad_scale);
    a.losses = r.losses.data_ptr<float>(), a.grad = r.grad.data_ptr<float>(), a.row_coef = r.row_coef.data_ptr<float>();
    anchor_rows(a, current_stream());
    return r;
  }
#endif
  const at::Tensor mask = row_mask(valid, logits);
  const at::Tensor a =
      (subset_columns(logits, cols) - lse.to(logits.device(), at::kFloat).reshape({n, 1}) -
       logp_ref.to(logits.device(), at::kFloat)) *
      mask;
  r.losses = a.pow(2).sum(1);
  r.grad = a * (2 * grad_scale);
  r.row_coef = a.sum(1) * (-2 * grad_scale);
  return r;
}

SafetyMassRowsResult safety_mass_rows(const at::Tensor& logits, const at::Tensor& cols, const at::Tensor& lse,
                                      const at::Tensor& a, const at::Tensor& a_rest, const at::Tensor& valid,
                                      double rest_floor, double grad_scale) {
  at::NoGradGuard no_grad;
  check_rows(logits, "safety_mass_rows");
  const int64_t n = logits.size(0), K = cols.numel();
  TORCH_CHECK(K > 0 && lse.numel() == n && a.dim() == 2 && a.size(0) == n && a.size(1) == K && a_rest.numel() == n,
              "safety_mass_rows: expected cols [K], lse [n], a [n, K], a_rest [n]");
  SafetyMassRowsResult r;
#ifdef SAFETUNE_CUDA_KERNELS
  if (kernels_apply(logits)) {
    const c10::cuda::CUDAGuard guard(logits.device());
    auto f32 = logits.options().dtype(at::kFloat);
    const at::Tensor c = dev(cols, logits, at::kLong), l = dev(lse.reshape({n}), logits, at::kFloat),
                     ad = dev(a, logits, at::kFloat), ar = dev(a_rest.reshape({n}), logits, at::kFloat);
    const at::Tensor v = valid.defined() ? dev(valid, logits, at::kBool) : at::Tensor();
    r.losses = at::empty({n}, f32);
    r.mass_terms = at::empty({n}, f32);
    r.grad = at::empty({n, K}, f32);
    r.row_coef = at::empty({n}, f32);
    SafetyMassRows k;
    k.z_theta = bf16_ptr(logits), k.ld_theta = logits.stride(0), k.cols = c.data_ptr<int64_t>();
    k.lse_theta = l.data_ptr<float>(), k.a = ad.data_ptr<float>(), k.ld_ref = K, k.a_rest = ar.data_ptr<float>();
    k.valid = valid_ptr(v), k.n = n, k.K = K, k.grad_scale = static_cast<float>(grad_scale);
    k.rest_floor = static_cast<float>(rest_floor);
    k.losses = r.losses.data_ptr<float>(), k.mass_terms = r.mass_terms.data_ptr<float>();
    k.grad = r.grad.data_ptr<float>(), k.row_coef = r.row_coef.data_ptr<float>();
    safety_mass_rows(k, current_stream());
    return r;
  }
#endif
  // The kernel's arithmetic, in fp32 torch ops.
  const at::Tensor mask = row_mask(valid, logits);
  const at::Tensor log_p = subset_columns(logits, cols) - lse.to(logits.device(), at::kFloat).reshape({n, 1});
  const at::Tensor p = log_p.exp();
  const at::Tensor ad = a.to(logits.device(), at::kFloat);
  const at::Tensor ar = a_rest.to(logits.device(), at::kFloat).reshape({n, 1});
  const at::Tensor log_p_S = log_p.logsumexp(1, /*keepdim=*/true);
  const at::Tensor p_rest = at::expm1(log_p_S).neg_().clamp_min_(0);
  const at::Tensor A_R = ar.clamp_min(rest_floor), P_R = p_rest.clamp_min(rest_floor);
  const at::Tensor rest_term = ar * (A_R.log() - P_R.log());
  const at::Tensor a_S = ad.sum(1, /*keepdim=*/true);
  r.losses = (((at::xlogy(ad, ad) - ad * log_p).sum(1, /*keepdim=*/true) + rest_term) * mask).squeeze(1);
  r.mass_terms = ((at::xlogy(a_S, a_S) - a_S * log_p_S + rest_term) * mask).squeeze(1);
  const at::Tensor c = 1 - A_R / P_R;
  r.grad = (p * (1 - c) - ad) * (grad_scale * mask);
  r.row_coef = (c * (grad_scale * mask)).squeeze(1);
  return r;
}

void add_subset_grad_(const at::Tensor& grad_rows, const at::Tensor& cols, const at::Tensor& grad) {
  at::NoGradGuard no_grad;
  check_rows(grad_rows, "add_subset_grad_");
  const int64_t n = grad_rows.size(0), K = cols.numel();
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == n && grad.size(1) == K, "add_subset_grad_: expected grad [n, K]");
#ifdef SAFETUNE_CUDA_KERNELS
  if (kernels_apply(grad_rows)) {
    const c10::cuda::CUDAGuard guard(grad_rows.device());
    const at::Tensor c = dev(cols, grad_rows, at::kLong), g = dev(grad, grad_rows, at::kFloat);
    add_subset_grad(bf16_ptr(grad_rows), grad_rows.stride(0), c.data_ptr<int64_t>(), g.data_ptr<float>(), n, K,
                    current_stream());
    return;
  }
#endif
  const at::Tensor c = cols.to(grad_rows.device(), at::kLong);
  const at::Tensor sum = grad_rows.index_select(1, c).to(at::kFloat) + grad.to(grad_rows.device(), at::kFloat);
  grad_rows.index_copy_(1, c, sum.to(grad_rows.scalar_type()));
}

}  // namespace safetune::cuda
