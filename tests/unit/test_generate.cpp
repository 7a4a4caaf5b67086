// Generation: the KV-cache path equals greedy decoding by full recomputation, batching
// equals one prompt at a time, EOS stops a row, and sampling is reproducible for a seed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "safetune/model/generate.h"
#include "safetune/model/transformer.h"
#include "test_util.h"

using namespace safetune;
using model::ModelConfig;

namespace {

ModelConfig tiny(const std::string& arch) { return test_util::tiny_model_config(arch, 4); }

std::shared_ptr<model::Transformer> make(const ModelConfig& c) {
  auto m = std::make_shared<model::Transformer>(c, at::TensorOptions().dtype(at::kFloat));
  // A large init spreads the logits, so greedy choices are not near-ties.
  m->init_weights(11, 0.5, true);
  return m;
}

const std::vector<std::vector<int64_t>> kPrompts = {{5, 9, 200, 3, 4, 6, 7}, {11}, {100, 101, 102, 103}};

}  // namespace

TEST(Generate, CacheEqualsFullRecomputation) {
  for (const char* arch : {"llama", "qwen2", "mistral", "qwen3", "gemma2", "gemma3", "phi3"}) {
    auto m = make(tiny(arch));
    model::GenerateOptions o;
    o.max_new_tokens = 12;
    auto cached = model::generate(*m, kPrompts, o);
    o.use_cache = false;
    auto full = model::generate(*m, kPrompts, o);
    ASSERT_EQ(cached.size(), kPrompts.size());
    for (size_t b = 0; b < kPrompts.size(); ++b) {
      EXPECT_EQ(cached[b].size(), 12u);
      EXPECT_EQ(cached[b], full[b]) << arch << " row " << b;
    }
    // The batch (left-padded) gives each prompt what it gets alone.
    o.use_cache = true;
    for (size_t b = 0; b < kPrompts.size(); ++b) EXPECT_EQ(model::generate(*m, {kPrompts[b]}, o)[0], cached[b]) << arch;
  }
}

TEST(Generate, EosStopsItsRowOnly) {
  auto m = make(tiny("llama"));
  model::GenerateOptions o;
  o.max_new_tokens = 10;
  auto free_run = model::generate(*m, kPrompts, o);
  o.eos_ids = {free_run[0][2]};  // row 0 emits this as its third token
  auto stopped = model::generate(*m, kPrompts, o);
  for (size_t b = 0; b < kPrompts.size(); ++b) {
    // Each row is the free run cut just after its first EOS.
    auto it = std::find(free_run[b].begin(), free_run[b].end(), o.eos_ids[0]);
    std::vector<int64_t> expect(free_run[b].begin(), it == free_run[b].end() ? it : it + 1);
    EXPECT_EQ(stopped[b], expect) << "row " << b;
  }
  EXPECT_LE(stopped[0].size(), 3u);
  EXPECT_EQ(stopped[0].back(), o.eos_ids[0]);
}

TEST(Generate, SamplingIsSeeded) {
  auto m = make(tiny("qwen2"));
  model::GenerateOptions o;
  o.max_new_tokens = 16;
  o.temperature = 1.5;
  o.top_p = 0.95;
  o.seed = 42;
  auto a = model::generate(*m, kPrompts, o);
  auto b = model::generate(*m, kPrompts, o);
  EXPECT_EQ(a, b);
  o.seed = 43;
  EXPECT_NE(model::generate(*m, kPrompts, o), a);
  // A tiny nucleus leaves only the most likely token: greedy.
  o.top_p = 1e-6;
  auto nucleus = model::generate(*m, kPrompts, o);
  o.temperature = 0;
  EXPECT_EQ(nucleus, model::generate(*m, kPrompts, o));
}

TEST(Generate, TopPKeepsTheNucleus) {
  // probabilities .5 .3 .2: top_p .7 keeps the first two (their mass reaches .7 at the second).
  at::Tensor logits = at::log(at::tensor({0.5f, 0.3f, 0.2f})).unsqueeze(0).repeat({2000, 1});
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor s = model::sample_next(logits, 1.0, 0.7, gen);
  EXPECT_EQ((s == 2).sum().item<int64_t>(), 0);
  const double frac0 = (s == 0).to(at::kFloat).mean().item<double>();
  EXPECT_NEAR(frac0, 0.5 / 0.8, 0.05);
  at::Tensor all = model::sample_next(logits, 1.0, 1.0, gen);
  EXPECT_GT((all == 2).sum().item<int64_t>(), 0);
}
