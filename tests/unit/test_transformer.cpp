// The transformer: HF parameter names, padding invariance of batched forwards, KV-cache
// chunks equal one full pass, and load_model's checks of checkpoint shapes and names.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "safetune/core/error.h"
#include "safetune/io/tensor_io.h"
#include "safetune/model/load.h"
#include "safetune/model/cpu_kernels.h"
#include "safetune/model/transformer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace safetune;
using model::ModelConfig;

namespace {

ModelConfig tiny(const std::string& arch) {
  ModelConfig c = test_util::tiny_model_config(arch, 3);
  c.eos_token_ids = {257};
  return c;
}

std::shared_ptr<model::Transformer> make(const ModelConfig& c, uint64_t seed = 7) {
  auto m = std::make_shared<model::Transformer>(c, at::TensorOptions().dtype(at::kFloat));
  m->init_weights(seed, 0.2, /*randomise_all=*/true);
  return m;
}

std::string temp_dir(const std::string& name) { return test_util::fresh_temp_dir("safetune_test_" + name); }

}  // namespace

TEST(Transformer, ParameterNamesAreHF) {
  auto q = make(tiny("qwen2"));
  auto names = q->named_parameters();
  for (const char* n : {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                        "model.layers.0.self_attn.q_proj.bias", "model.layers.1.self_attn.v_proj.bias",
                        "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                        "model.layers.1.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
                        "model.layers.0.post_attention_layernorm.weight", "model.norm.weight", "lm_head.weight"})
    EXPECT_NE(names.find(n), nullptr) << n;
  EXPECT_EQ(names.find("model.layers.0.self_attn.o_proj.bias"), nullptr);  // Qwen2: no o bias
  EXPECT_EQ(names["model.layers.0.self_attn.k_proj.weight"].sizes(), (std::vector<int64_t>{16, 32}));

  ModelConfig c = tiny("llama");
  c.tie_word_embeddings = true;
  auto l = make(c);
  EXPECT_EQ(l->named_parameters().find("lm_head.weight"), nullptr);
  EXPECT_TRUE(l->lm_head_weight().is_same(l->model->embed_tokens->weight));

  // Qwen3: per-head q/k norms of head_dim, no biases by default.
  auto q3 = make(tiny("qwen3"))->named_parameters();
  ASSERT_NE(q3.find("model.layers.1.self_attn.q_norm.weight"), nullptr);
  EXPECT_EQ(q3["model.layers.1.self_attn.k_norm.weight"].sizes(), (std::vector<int64_t>{12}));
  EXPECT_EQ(q3.find("model.layers.0.self_attn.q_proj.bias"), nullptr);
  // Gemma: four norms per layer, tied embeddings; q/k norms in Gemma 3 only.
  for (const char* arch : {"gemma2", "gemma3"}) {
    auto g = make(tiny(arch))->named_parameters();
    for (const char* n : {"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
                          "model.layers.0.pre_feedforward_layernorm.weight",
                          "model.layers.0.post_feedforward_layernorm.weight"})
      EXPECT_NE(g.find(n), nullptr) << arch << " " << n;
    EXPECT_EQ(g.find("lm_head.weight"), nullptr) << arch;
    EXPECT_EQ(g.find("model.layers.0.self_attn.q_norm.weight") != nullptr, std::string(arch) == "gemma3") << arch;
  }
}

// Gemma's norms scale by (1 + w), so HF's initialisation leaves w at 0; the others at 1.
TEST(Transformer, InitialNormWeights) {
  auto g = std::make_shared<model::Transformer>(tiny("gemma2"), at::TensorOptions().dtype(at::kFloat));
  g->init_weights(1);
  EXPECT_EQ(g->named_parameters()["model.norm.weight"].abs().max().item<double>(), 0.0);
  auto l = std::make_shared<model::Transformer>(tiny("qwen3"), at::TensorOptions().dtype(at::kFloat));
  l->init_weights(1);
  EXPECT_EQ(l->named_parameters()["model.layers.0.self_attn.q_norm.weight"].min().item<double>(), 1.0);
}

// The published layer patterns: Gemma 2 alternates (local first), Gemma 3 has one global
// layer in every sliding_window_pattern, and layer_types overrides either.
TEST(Transformer, SlidingLayerPatterns) {
  io::ModelConfig g2 = io::decoder_config("gemma2", {300, 32, 48, 4, 4, 2});
  EXPECT_EQ((std::vector<bool>{g2.layer_slides(0), g2.layer_slides(1), g2.layer_slides(2), g2.layer_slides(3)}),
            (std::vector<bool>{true, false, true, false}));
  io::ModelConfig g3 = io::decoder_config("gemma3", {300, 32, 48, 13, 4, 2});
  for (int64_t i = 0; i < 13; ++i) EXPECT_EQ(g3.layer_slides(i), i != 5 && i != 11) << i;
  g3.sliding_layers.assign(13, false);
  EXPECT_FALSE(g3.layer_slides(0));
}

// Each row of a padded batch (left or right padding) gives, at its real positions, the
// logits of the same sequence run alone.
void check_padding(const ModelConfig& c, bool left) {
  at::NoGradGuard ng;
  auto m = make(c);
  std::vector<std::vector<int64_t>> seqs = {{5, 9, 200, 3, 4, 6, 7}, {11, 12}, {100, 101, 102, 103, 104}};
  const int64_t B = seqs.size(), T = 7;
  at::Tensor ids = at::full({B, T}, 0, at::kLong), mask = at::zeros({B, T}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    int64_t n = seqs[b].size(), off = left ? T - n : 0;
    ids[b].narrow(0, off, n).copy_(at::tensor(seqs[b], at::kLong));
    mask[b].narrow(0, off, n).fill_(1);
  }
  at::Tensor batched = m->logits(m->forward(ids, mask));
  ASSERT_TRUE(at::isfinite(batched).all().item<bool>());
  for (int64_t b = 0; b < B; ++b) {
    int64_t n = seqs[b].size(), off = left ? T - n : 0;
    at::Tensor alone = m->logits(m->forward(at::tensor(seqs[b], at::kLong).unsqueeze(0)))[0];
    double diff = (batched[b].narrow(0, off, n) - alone).abs().max().item<double>();
    EXPECT_LT(diff, 1e-5) << c.arch() << (left ? " left" : " right") << " padding, row " << b;
  }
}

TEST(Transformer, PaddedBatchEqualsUnpadded) {
  for (const char* arch : {"llama", "qwen2", "mistral", "qwen3", "gemma2", "gemma3", "phi3"}) {
    check_padding(tiny(arch), /*left=*/true);
    check_padding(tiny(arch), /*left=*/false);
  }
}

// Feeding a sequence in chunks through the KV cache equals one full forward, with a
// left-padded batch and a sliding window shorter than the sequence.
TEST(Transformer, CacheChunksEqualFullForward) {
  for (const char* arch : {"mistral", "qwen3", "gemma2", "gemma3", "phi3"}) {
  SCOPED_TRACE(arch);
  at::NoGradGuard ng;
  ModelConfig c = tiny(arch);
  auto m = make(c);
  at::Tensor ids = at::randint(0, 300, {2, 9}, at::kLong);
  at::Tensor mask = at::ones({2, 9}, at::kLong);
  mask[1].narrow(0, 0, 3).fill_(0);
  at::Tensor full = m->forward(ids, mask);
  model::KVCache cache(c, 2, 12, at::TensorOptions().dtype(at::kFloat));
  at::Tensor a = m->forward(ids.narrow(1, 0, 4), mask.narrow(1, 0, 4), &cache);
  at::Tensor b = m->forward(ids.narrow(1, 4, 1), {}, &cache);
  at::Tensor d = m->forward(ids.narrow(1, 5, 4), {}, &cache);
  at::Tensor chunked = at::cat({a, b, d}, 1);
  EXPECT_LT((chunked.narrow(1, 3, 6) - full.narrow(1, 3, 6)).abs().max().item<double>(), 1e-5);
  EXPECT_LT((chunked[0] - full[0]).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(cache.length, 9);
  EXPECT_EQ(cache.count[1].item<int64_t>(), 6);
  }
}

TEST(Transformer, RopeLlama3KeepsHighFrequencies) {
  ModelConfig c = tiny("llama");
  c.head_dim = 64;
  at::Tensor plain = model::rope_inv_freq(c);
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  at::Tensor scaled = model::rope_inv_freq(c);
  // Wavelengths below original_max / high_freq_factor keep their frequency; those above
  // original_max / low_freq_factor are divided by the factor.
  at::Tensor wavelen = 2 * M_PI / plain;
  at::Tensor high = wavelen < 8192.0 / 4, low = wavelen > 8192.0;
  EXPECT_TRUE(at::equal(scaled.masked_select(high), plain.masked_select(high)));
  EXPECT_TRUE(at::allclose(scaled.masked_select(low), plain.masked_select(low) / 8));
  EXPECT_GT(low.sum().item<int64_t>(), 0);
}

TEST(LoadModel, RoundTripAndErrors) {
  const ModelConfig c = tiny("qwen2");
  auto m = make(c);
  const std::string dir = temp_dir("load");
  model::save_model(dir, *m, at::kFloat);
  auto loaded = model::load_model(dir);
  for (const auto& item : m->named_parameters())
    EXPECT_TRUE(at::equal(item.value(), loaded.model->named_parameters()[item.key()])) << item.key();

  // A tensor of the wrong shape: named, with expected and found shapes.
  auto tensors = io::load_tensors(dir + "/model.safetensors");
  std::vector<std::pair<std::string, at::Tensor>> edited;
  for (auto& [name, t] : tensors)
    edited.emplace_back(name, name == "model.layers.1.mlp.up_proj.weight" ? at::zeros({47, 32}) : t);
  io::save_tensors(dir + "/model.safetensors", edited);
  try {
    model::load_model(dir);
    FAIL() << "no error";
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[47, 32]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[48, 32]"), std::string::npos) << msg;
  }

  // An unexpected extra tensor.
  edited.clear();
  for (auto& [name, t] : tensors) edited.emplace_back(name, t);
  edited.emplace_back("model.layers.0.self_attn.o_proj.bias", at::zeros({32}));
  io::save_tensors(dir + "/model.safetensors", edited);
  EXPECT_THROW(model::load_model(dir), InputError);

  // A missing tensor.
  edited.clear();
  for (auto& [name, t] : tensors)
    if (name != "model.norm.weight") edited.emplace_back(name, t);
  io::save_tensors(dir + "/model.safetensors", edited);
  try {
    model::load_model(dir);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.norm.weight"), std::string::npos) << e.what();
  }

  // No config.json.
  fs::remove(dir + "/config.json");
  EXPECT_THROW(model::load_model(dir), InputError);
  EXPECT_THROW(model::load_model(dir + "/nonexistent"), InputError);
  fs::remove_all(dir);
}

// The fused CPU kernels (used when no gradient is needed) and the ATen ops (used for
// training) compute the same forward.
TEST(Transformer, FusedKernelsEqualAtenPath) {
  for (const char* arch : {"llama", "qwen2", "mistral", "qwen3", "gemma2", "gemma3", "phi3"}) {
    ModelConfig c = tiny(arch);
    auto m = make(c);
    at::Tensor ids = at::randint(0, 300, {3, 11}, at::kLong);
    at::Tensor fused, aten;
    {
      at::NoGradGuard ng;
      fused = m->forward(ids);
    }
    aten = m->forward(ids);
    ASSERT_TRUE(aten.requires_grad());
    EXPECT_LT((fused - aten.detach()).abs().max().item<double>(), 1e-5) << arch;
  }
}

// The element-wise kernels behind Gemma's soft-caps and GeGLU against ATen's tanh and
// tanh-approximate GELU, over small, medium, large and saturating inputs of both signs.
TEST(CpuKernels, SoftcapAndGeluTanhFollowAten) {
  at::manual_seed(7);  // the random parts of the inputs: the same in every run
  at::Tensor x = at::cat({at::linspace(-60, 60, 100001), at::randn({4096}) * 1e-3, at::randn({4096}) * 3,
                          at::tensor({0.0f, 1e-30f, -1e-30f, 0.6249f, 0.625f, -0.625f, 88.0f, -100.0f, 1e4f})});
  for (double cap : {50.0, 30.0, 2.0}) {
    at::Tensor got = x.clone();
    model::cpu::softcap_(got, cap);
    const at::Tensor want = at::tanh(x.to(at::kDouble) / cap) * cap;
    EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-6 * cap) << cap;
  }
  at::Tensor g = x.clone(), u = at::randn(x.sizes());
  model::cpu::gelu_tanh_mul_(g, u);
  const at::Tensor want = at::gelu(x.to(at::kDouble), "tanh") * u.to(at::kDouble);
  // Relative to the product, or to u where the product is small: the kernel's error is the
  // fp32 GELU's (1 + tanh cancels for negative x), which u only scales.
  const at::Tensor err = (g.to(at::kDouble) - want).abs() / at::maximum(want.abs(), u.abs().to(at::kDouble)).clamp_min(1.0);
  EXPECT_LT(err.max().item<double>(), 2e-6);
}

// bf16 compute (the CUDA policy) runs the same code paths in half precision: its logits
// follow the fp32 ones to within bf16 rounding, with and without padding.
TEST(Transformer, Bf16FollowsFp32) {
  at::NoGradGuard ng;
  ModelConfig c = tiny("qwen2");
  auto m = make(c);
  at::Tensor ids = at::randint(0, 300, {2, 10}, at::kLong);
  at::Tensor mask = at::ones({2, 10}, at::kLong);
  mask[1].narrow(0, 0, 4).fill_(0);
  at::Tensor ref = m->logits(m->forward(ids, mask));
  at::Tensor ref_causal = m->logits(m->forward(ids));
  m->to(at::kBFloat16);
  ASSERT_EQ(m->dtype(), at::kBFloat16);
  at::Tensor got = m->logits(m->forward(ids, mask)).to(at::kFloat);
  at::Tensor got_causal = m->logits(m->forward(ids)).to(at::kFloat);
  const double scale = ref.abs().max().item<double>();
  EXPECT_LT((got[0] - ref[0]).abs().max().item<double>(), 0.05 * scale);
  EXPECT_LT((got[1].narrow(0, 4, 6) - ref[1].narrow(0, 4, 6)).abs().max().item<double>(), 0.05 * scale);
  EXPECT_LT((got_causal - ref_causal).abs().max().item<double>(), 0.05 * scale);
  EXPECT_GT((got_causal - ref_causal).abs().max().item<double>(), 0.0);  // really ran in bf16
}
