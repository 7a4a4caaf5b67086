// The tensor-level fused-loss entry points (safetune/cuda/loss_dispatch.h) against autograd
// of the plain compositions: at::cross_entropy and the constraints of loss/constraints.h.
// On CPU this checks the torch-op path in fp32 (1e-5); on a CUDA build with a GPU the same
// cases run the kernels on bf16 logits, compared with fp32 autograd on the same bf16 values
// (losses 1e-4 relative; logits gradients, stored in bf16, 2^-7 relative + 1e-6 absolute).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "safetune/cuda/loss_dispatch.h"
#include "safetune/loss/constraints.h"

using namespace safetune;

namespace {

struct Place {
  c10::Device device;
  at::ScalarType dtype;
  double rel, abs;  // gradient tolerance: rel * |ref| + abs + abs_of_max * max |ref|
  double abs_of_max;  // bf16: a gradient rounded twice (dense part, then + the part on S)
};

std::vector<Place> places() {
  std::vector<Place> s{{c10::Device(c10::kCPU), at::kFloat, 1e-5, 1e-7, 0.0}};
  if (cuda::kernels_built() && torch::cuda::is_available())
    s.push_back({c10::Device(c10::kCUDA, 0), at::kBFloat16, 1.0 / 128, 1e-6, 1.0 / 512});
  return s;
}

// Random logits [n, V] in the setup's dtype, and the same values in fp32 on CPU.
std::pair<at::Tensor, at::Tensor> logits_pair(const Place& s, int64_t n, int64_t V, double scale) {
  at::Tensor z = (at::randn({n, V}, at::kDouble) * scale).to(s.dtype);
  return {z.to(s.device), z.to(at::kFloat).clone()};  // separate storage: the first is overwritten
}

void expect_close(const at::Tensor& got, const at::Tensor& ref, double rel, double abs, const std::string& what,
                  double abs_of_max = 0) {
  const at::Tensor g = got.detach().to(at::kCPU, at::kDouble), r = ref.detach().to(at::kCPU, at::kDouble);
  ASSERT_EQ(g.sizes(), r.sizes()) << what;
  abs += abs_of_max * r.abs().max().item<double>();
  const at::Tensor excess = (g - r).abs() - (r.abs() * rel + abs);
  EXPECT_LE(excess.max().item<double>(), 0.0) << what << ": max abs diff " << (g - r).abs().max().item<double>();
}

at::Tensor distinct_cols(int64_t V, int64_t K) { return at::randperm(V, at::kLong).slice(0, 0, K); }

}  // namespace

TEST(LossDispatch, CrossEntropyRowsMatchAutograd) {
  at::manual_seed(1);
  for (const Place& s : places()) {
    const int64_t n = 21, V = 1003;
    auto [z, zf] = logits_pair(s, n, V, 3.0);
    at::Tensor t = at::randint(V, {n}, at::kLong);
    t.index_put_({at::arange(0, n, 4)}, -100);
    const int64_t counted = t.ne(-100).sum().item<int64_t>();
    at::Tensor zr = zf.clone().requires_grad_(true);
    at::Tensor ref = at::cross_entropy_loss(zr, t, {}, at::Reduction::Mean, -100);
    ref.backward();
    auto r = cuda::cross_entropy_rows_(z, t.to(s.device), 1.0 / counted, -100);
    expect_close(r.losses.sum() / counted, ref, 1e-4, 1e-6, "mean loss on " + s.device.str());
    expect_close(r.lse, zf.logsumexp(1), 1e-4, 1e-5, "lse on " + s.device.str());
    expect_close(z, zr.grad(), s.rel, s.abs, "gradient in place on " + s.device.str(), s.abs_of_max);
  }
}

TEST(LossDispatch, SubsetKlMatchesWeightedSubsetKl) {
  at::manual_seed(2);
  for (const Place& s : places()) {
    for (double T : {0.5, 2.0}) {
      const int64_t n = 19, V = 517, K = 37;
      auto [z, zf] = logits_pair(s, n, V, 2.0);
      const at::Tensor S = distinct_cols(V, K);
      const at::Tensor z_ref = at::randn({n, K}) * 2;
      at::Tensor w = at::rand({K});
      w.index_put_({at::arange(0, K, 5)}, 0.0);
      at::Tensor valid = at::ones({n}, at::kBool);
      valid.index_put_({at::arange(1, n, 6)}, false);
      const int64_t n_valid = valid.sum().item<int64_t>();
      at::Tensor zr = zf.clone().requires_grad_(true);
      at::Tensor ref = loss::weighted_subset_kl(zr.index_select(1, S), z_ref, w, valid, T);
      ref.backward();
      auto r = cuda::subset_kl_rows(z, S.to(s.device), z_ref.to(s.device), w.to(s.device), valid.to(s.device), T,
                                    1.0 / n_valid);
      const std::string where = s.device.str() + " T=" + std::to_string(T);
      expect_close(r.losses.sum() / n_valid, ref, 1e-4, 1e-6, "loss on " + where);
      // The subset gradient is fp32 on every device: only the inputs were rounded.
      expect_close(r.grad, zr.grad().index_select(1, S), 1e-4, 1e-6, "gradient on " + where);
      // Assembled into a zero logits gradient, the other columns stay 0.
      at::Tensor g = at::zeros({n, V}, z.options());
      cuda::add_subset_grad_(g, S.to(s.device), r.grad);
      expect_close(g, zr.grad(), s.rel, s.abs, "assembled gradient on " + where, s.abs_of_max);
    }
  }
}

TEST(LossDispatch, AnchorPlusCrossEntropyMatchesAutograd) {
  at::manual_seed(3);
  for (const Place& s : places()) {
    const int64_t n = 17, V = 411, K = 23;
    const double lambda = 0.7;
    auto [z, zf] = logits_pair(s, n, V, 2.0);
    const at::Tensor logits_ref = at::randn({n, V}) * 2;
    const at::Tensor S = distinct_cols(V, K);
    at::Tensor t = at::randint(V, {n}, at::kLong);
    t.index_put_({at::arange(2, n, 5)}, -100);
    at::Tensor valid = at::ones({n}, at::kBool);
    valid.index_put_({at::arange(0, n, 4)}, false);
    const int64_t counted = t.ne(-100).sum().item<int64_t>(), n_valid = valid.sum().item<int64_t>();
    at::Tensor zr = zf.clone().requires_grad_(true);
    at::Tensor ce = at::cross_entropy_loss(zr, t, {}, at::Reduction::Mean, -100);
    at::Tensor anchor = loss::anchor_loss(zr, logits_ref, S, valid);
    (ce + lambda * anchor).backward();

    // The chain the fused op runs: logsumexp, anchor terms, gradient with the row
    // coefficient, then the sparse part on S.
    const at::Tensor Sd = S.to(s.device), td = t.to(s.device);
    auto stats = cuda::cross_entropy_rows_(z, td, 1.0, -100, {}, {}, /*write_grad=*/false);
    const at::Tensor logp_ref = at::log_softmax(logits_ref, 1).index_select(1, S);
    auto a = cuda::anchor_rows(z, Sd, stats.lse, logp_ref.to(s.device), valid.to(s.device),
                               lambda / double(n_valid * K));
    auto r = cuda::cross_entropy_rows_(z, td, 1.0 / counted, -100, stats.lse, a.row_coef);
    cuda::add_subset_grad_(z, Sd, a.grad);
    expect_close(r.losses.sum() / counted, ce, 1e-4, 1e-6, "cross-entropy on " + s.device.str());
    expect_close(a.losses.sum() / double(n_valid * K), anchor, 1e-4, 1e-6, "anchor on " + s.device.str());
    expect_close(z, zr.grad(), s.rel, s.abs, "gradient on " + s.device.str(), s.abs_of_max);
  }
}

TEST(LossDispatch, KernelsOnlyForBf16CudaTensors) {
  EXPECT_FALSE(cuda::kernels_apply(at::zeros({2, 3}, at::kBFloat16)));  // CPU tensors: torch ops
  EXPECT_FALSE(cuda::kernels_apply(at::Tensor()));
}
