// Fused linear cross-entropy against the plain composition (full logits + at::cross_entropy,
// differentiated by autograd): values and gradients for hidden states and weight.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "safetune/loss/cross_entropy.h"

using namespace safetune;

namespace {

struct Case {
  int64_t n, d, v, chunk;
  bool weight_grad;
  double ignore_share;
};

void check(const Case& c) {
  torch::manual_seed(1234 + c.n + c.chunk);
  at::Tensor h0 = torch::randn({c.n, c.d}, torch::kDouble).to(torch::kFloat);
  at::Tensor w0 = (torch::randn({c.v, c.d}) * 0.5);
  at::Tensor targets = torch::randint(c.v, {c.n}, torch::kLong);
  targets.masked_fill_(torch::rand({c.n}) < c.ignore_share, loss::kIgnoreIndex);

  at::Tensor h1 = h0.clone().requires_grad_(true), w1 = w0.clone().requires_grad_(c.weight_grad);
  at::Tensor fused = loss::fused_linear_cross_entropy(h1, w1, targets, {c.chunk, loss::kIgnoreIndex});
  (fused * 1.7).backward();

  at::Tensor h2 = h0.clone().requires_grad_(true), w2 = w0.clone().requires_grad_(c.weight_grad);
  at::Tensor plain = loss::linear_cross_entropy(h2, w2, targets);
  (plain * 1.7).backward();

  const std::string what = "n=" + std::to_string(c.n) + " chunk=" + std::to_string(c.chunk);
  EXPECT_NEAR(fused.item<double>(), plain.item<double>(), 1e-5 * std::max(1.0, std::abs(plain.item<double>()))) << what;
  auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
  };
  EXPECT_LT(rel(h1.grad(), h2.grad()), 1e-5) << what;
  if (c.weight_grad) {
    EXPECT_LT(rel(w1.grad(), w2.grad()), 1e-5) << what;
  } else {
    EXPECT_FALSE(w1.grad().defined()) << what;
  }
}

}  // namespace

TEST(FusedCrossEntropy, MatchesUnfused) {
  check({37, 16, 50, 8, true, 0.3});     // chunk does not divide N
  check({5, 16, 50, 64, true, 0.0});     // N smaller than one chunk
  check({64, 32, 300, 16, false, 0.5});  // frozen lm_head (LoRA)
  check({20, 8, 40, 20, true, 0.2});     // exactly one chunk
}

TEST(FusedCrossEntropy, AllIgnoredGivesZeroAndZeroGradient) {
  at::Tensor h = torch::randn({6, 4}, torch::requires_grad());
  at::Tensor w = torch::randn({10, 4}, torch::requires_grad());
  at::Tensor t = torch::full({6}, loss::kIgnoreIndex, torch::kLong);
  at::Tensor l = loss::fused_linear_cross_entropy(h, w, t);
  l.backward();
  EXPECT_EQ(l.item<float>(), 0.0f);
  EXPECT_EQ(h.grad().abs().max().item<float>(), 0.0f);
  EXPECT_EQ(w.grad().abs().max().item<float>(), 0.0f);
}

TEST(FusedCrossEntropy, TiedWeightAccumulatesBothUses) {
  // A tied lm_head is the embedding matrix: its gradient sums the embedding's and the head's.
  torch::manual_seed(7);
  at::Tensor emb = torch::randn({30, 8}, torch::requires_grad());
  at::Tensor ids = torch::randint(30, {12}, torch::kLong);
  at::Tensor targets = torch::randint(30, {12}, torch::kLong);
  at::Tensor fused = loss::fused_linear_cross_entropy(emb.index_select(0, ids).tanh(), emb, targets, {5});
  fused.backward();
  at::Tensor g1 = emb.grad().clone();
  emb.mutable_grad().zero_();
  loss::linear_cross_entropy(emb.index_select(0, ids).tanh(), emb, targets).backward();
  EXPECT_TRUE(torch::allclose(g1, emb.grad(), 1e-5, 1e-6));
}
