// Activation checkpointing: a block run through checkpointed() gives the same output and
// the same gradients (for its input and its weights, frozen ones left alone) as the block
// run with autograd, dropout included (the RNG state is replayed in the recomputation),
// and leaves the generator where a plain run leaves it.
#include <gtest/gtest.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "safetune/model/activation_checkpoint.h"

using namespace safetune;

TEST(Checkpoint, SameOutputGradientsAndRng) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor w1 = at::randn({16, 8}, gen), w2 = at::randn({8, 16}, gen), frozen = at::randn({16}, gen);
  const at::Tensor x0 = at::randn({3, 8}, gen);
  auto run = [&](bool ckpt, at::Tensor& gx, at::Tensor& g1, at::Tensor& g2, at::Tensor& y_out, at::Tensor& rng_after) {
    at::Tensor a = w1.clone().requires_grad_(true), b = w2.clone().requires_grad_(true), f = frozen.clone();
    at::Tensor x = x0.clone().requires_grad_(true);
    at::manual_seed(123);
    model::BlockFn fn = [a, b, f](const at::Tensor& in) {
      at::Tensor hdn = at::silu(at::linear(in, a) + f);
      return in + at::linear(at::dropout(hdn, 0.3, true), b);
    };
    at::Tensor h = x * 2;  // a node before the block: the input gradient must flow through it
    at::Tensor y = ckpt ? model::checkpointed(fn, h, {a, b, f}) : fn(h);
    y_out = y.detach().clone();
    (y * y).sum().backward();
    gx = x.grad().clone();
    g1 = a.grad().clone();
    g2 = b.grad().clone();
    EXPECT_FALSE(f.grad().defined());
    rng_after = at::detail::getDefaultCPUGenerator().get_state();
  };
  at::Tensor gx0, g10, g20, y0, r0, gx1, g11, g21, y1, r1;
  run(false, gx0, g10, g20, y0, r0);
  run(true, gx1, g11, g21, y1, r1);
  EXPECT_TRUE(at::allclose(y0, y1, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(gx0, gx1, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(g10, g11, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(g20, g21, 1e-5, 1e-6));
  EXPECT_TRUE(at::equal(r0, r1));
  // Dropout really was active (otherwise the replay would be untested).
  EXPECT_GT((y0 - (x0 * 2 + at::linear(at::silu(at::linear(x0 * 2, w1) + frozen), w2))).abs().max().item<float>(), 1e-3);
}
