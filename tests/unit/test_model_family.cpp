// The families table (io/model_family.h): every row round-trips through config.json and
// names exactly the linear modules its decoder builds; a Llama-shaped family added as one
// row runs as Llama does; Phi-3's fused projections compute what separate ones with the
// same rows compute (the split order of HF's Phi3Attention and Phi3MLP).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "safetune/core/error.h"
#include "safetune/io/hf_config.h"
#include "safetune/io/model_family.h"
#include "safetune/model/lora.h"
#include "safetune/model/transformer.h"
#include "test_util.h"

using namespace safetune;

namespace {

std::shared_ptr<model::Transformer> make(const io::ModelConfig& c) {
  return std::make_shared<model::Transformer>(c, at::TensorOptions().dtype(at::kFloat));
}

std::string error_of(const std::string& text) { return test_util::hf_config_error(text); }

const char* const kSizes = R"("hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300)";

}  // namespace

TEST(ModelFamily, EveryRowRoundTripsThroughConfigJson) {
  for (const io::FamilyTraits& f : io::families()) {
    SCOPED_TRACE(f.name);
    EXPECT_EQ(io::family_by_name(f.name), &f);
    EXPECT_EQ(io::family_by_hf(f.architecture, ""), &f);
    EXPECT_EQ(io::family_by_hf("", f.model_type), &f);
    io::ModelConfig c = io::decoder_config(f.name, {300, 32, 48, 3, 4, 2});
    c.sliding_window = 5;
    const io::ModelConfig back = io::parse_hf_config(io::hf_config_json(c), "config.json");
    EXPECT_EQ(back.family, c.family);
    EXPECT_EQ(back.architecture(), f.architecture);
    EXPECT_EQ(back.hidden_act, f.activation);
    EXPECT_EQ(back.attention_bias, c.attention_bias);
    EXPECT_EQ(back.qk_norm, f.qk_norm);
    EXPECT_EQ(back.tie_word_embeddings, c.tie_word_embeddings);
    EXPECT_EQ(back.rope_theta, f.rope_theta);
    EXPECT_EQ(back.rms_norm_eps, f.rms_norm_eps);
    EXPECT_EQ(back.sliding_window.has_value(), f.window != io::WindowRule::kNone);
    EXPECT_EQ(back.attn_logit_softcapping.value_or(0.0), f.attn_softcap);
    EXPECT_EQ(back.final_logit_softcapping.value_or(0.0), f.final_softcap);
    for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(back.layer_slides(i), c.layer_slides(i)) << "layer " << i;
  }
}

// The row's LoRA target names are exactly the linear modules of its decoder layers.
TEST(ModelFamily, LoraTargetsAreTheLayersLinearModules) {
  for (const io::FamilyTraits& f : io::families()) {
    SCOPED_TRACE(f.name);
    auto m = make(io::decoder_config(f.name, {300, 32, 48, 1, 4, 2}));
    std::set<std::string> linear;
    for (const auto& item : m->named_modules())
      if (std::dynamic_pointer_cast<model::Linear>(item.value()) && item.key().rfind("model.layers.0.", 0) == 0)
        linear.insert(item.key().substr(item.key().rfind('.') + 1));
    EXPECT_EQ(linear, std::set<std::string>(f.lora_targets.begin(), f.lora_targets.end()));
  }
}

TEST(ModelFamily, ErrorsNameTheTable) {
  const std::string unknown = error_of(R"({"architectures": ["FalconForCausalLM"], )" + std::string(kSizes) + "}");
  EXPECT_NE(unknown.find("'FalconForCausalLM'"), std::string::npos) << unknown;
  for (const io::FamilyTraits& f : io::families())
    EXPECT_NE(unknown.find(f.architecture), std::string::npos) << unknown;
  // A field the family's row says must be off, refused by name.
  const std::string dropout =
      error_of(R"({"architectures": ["Phi3ForCausalLM"], "resid_pdrop": 0.1, )" + std::string(kSizes) + "}");
  EXPECT_NE(dropout.find("resid_pdrop"), std::string::npos) << dropout;
  EXPECT_THROW(io::decoder_config("falcon", {300, 32, 48, 1, 4, 2}), InputError);
  // LoRA names of another family are refused with this family's own.
  auto phi3 = make(io::decoder_config("phi3", {300, 32, 48, 1, 4, 2}));
  model::LoraSpec spec;
  spec.target_modules = {"q_proj"};
  try {
    model::lora_targets(*phi3, spec, "lora.target_modules");
    ADD_FAILURE() << "q_proj accepted on Phi-3";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("qkv_proj"), std::string::npos) << e.what();
  }
}

// A Llama-shaped family is one row: config.json naming it parses, writes back, and the
// model computes what the same weights compute as a Llama.
TEST(ModelFamily, ARenamedLlamaIsOneRow) {
  io::FamilyTraits row = io::traits_of(io::Family::kLlama);
  row.name = "renamed_llama";
  row.architecture = "RenamedLlamaForCausalLM";
  row.model_type = "renamed_llama";
  const io::Family renamed = io::add_family(row);
  EXPECT_THROW(io::add_family(row), InputError);  // once only

  const io::ModelConfig c = io::parse_hf_config(
      R"({"architectures": ["RenamedLlamaForCausalLM"], "attention_bias": true, )" + std::string(kSizes) + "}",
      "config.json");
  EXPECT_EQ(c.family, renamed);
  EXPECT_NE(io::hf_config_json(c).find("\"model_type\": \"renamed_llama\""), std::string::npos);
  io::ModelConfig as_llama = c;
  as_llama.family = io::Family::kLlama;
  auto a = make(c), b = make(as_llama);
  a->init_weights(3, 0.2, /*randomise_all=*/true);
  b->init_weights(3, 0.2, /*randomise_all=*/true);
  at::NoGradGuard ng;
  const at::Tensor ids = at::randint(0, 300, {2, 7}, at::kLong);
  EXPECT_TRUE(at::equal(a->logits(a->forward(ids)), b->logits(b->forward(ids))));
  EXPECT_EQ(io::decoder_config("renamed_llama", {300, 32, 48, 1, 4, 2}).family, renamed);
}

// Phi-3's qkv_proj holds [q; k; v] and gate_up_proj [gate; up] by rows: a Llama whose
// separate projections are those row blocks computes the same logits.
TEST(ModelFamily, Phi3FusedProjectionsSplitAsHF) {
  io::ModelConfig phi = io::decoder_config("phi3", {300, 32, 48, 2, 4, 2});
  io::ModelConfig llama = phi;
  llama.family = io::Family::kLlama;
  auto p = make(phi), l = make(llama);
  p->init_weights(5, 0.2, /*randomise_all=*/true);
  at::NoGradGuard ng;
  auto pp = p->named_parameters(), lp = l->named_parameters();
  for (const auto& item : lp) {
    const std::string& name = item.key();
    at::Tensor dst = item.value();
    auto rows = [&](const std::string& fused, int64_t from, int64_t n) {
      dst.copy_(pp[fused].narrow(0, from, n));
    };
    const std::string layer = name.substr(0, name.find(".", name.find("layers.") + 7) + 1);
    const int64_t q = 4 * 8, kv = 2 * 8, f = 48;
    if (name.find("q_proj") != std::string::npos) rows(layer + "self_attn.qkv_proj.weight", 0, q);
    else if (name.find("k_proj") != std::string::npos) rows(layer + "self_attn.qkv_proj.weight", q, kv);
    else if (name.find("v_proj") != std::string::npos) rows(layer + "self_attn.qkv_proj.weight", q + kv, kv);
    else if (name.find("gate_proj") != std::string::npos) rows(layer + "mlp.gate_up_proj.weight", 0, f);
    else if (name.find("up_proj") != std::string::npos) rows(layer + "mlp.gate_up_proj.weight", f, f);
    else dst.copy_(*pp.find(name));
  }
  const at::Tensor ids = at::randint(0, 300, {2, 9}, at::kLong);
  const double diff = (p->logits(p->forward(ids)) - l->logits(l->forward(ids))).abs().max().item<double>();
  EXPECT_LT(diff, 1e-5);
}
