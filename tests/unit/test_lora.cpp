// LoRA: PEFT's init, PEFT's file format (key names, adapter_config.json fields), save/load
// round trip and its checks, enable/disable, merge, and that training moves only adapters.
#include <gtest/gtest.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/io/tensor_io.h"
#include "safetune/model/lora.h"
#include "safetune/model/transformer.h"
#include "safetune/train/optimizer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace safetune;
using nlohmann::json;

namespace {

model::ModelConfig tiny_config() {
  model::ModelConfig c = test_util::tiny_model_config("llama");
  c.vocab_size = 200;
  return c;
}

std::shared_ptr<model::Transformer> tiny_model(uint64_t seed = 3) {
  auto m = std::make_shared<model::Transformer>(tiny_config(), at::TensorOptions().dtype(at::kFloat));
  m->init_weights(seed, 0.2);
  return m;
}

std::string temp_dir(const std::string& name) { return test_util::fresh_temp_dir("safetune_lora_" + name); }

at::Tensor ids() { return at::arange(0, 24, at::kLong).remainder(200).view({2, 12}) * 7 % 200; }

at::Tensor logits_of(model::Transformer& m) {
  at::NoGradGuard g;
  return m.logits(m.forward(ids()));
}

// Gives every B a random value so that adapters change the function.
void randomise_b(model::Transformer& m, uint64_t seed) {
  at::NoGradGuard g;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& [name, t] : model::lora_tensors(m))
    if (name.find("lora_B") != std::string::npos) t.copy_(at::empty(t.sizes()).normal_(0, 0.1, gen));
}

model::LoraSpec spec(std::vector<std::string> targets = {"q_proj", "v_proj"}, int64_t r = 4, double alpha = 16) {
  model::LoraSpec s;
  s.r = r;
  s.alpha = alpha;
  s.target_modules = std::move(targets);
  return s;
}

}  // namespace

TEST(Lora, PeftInitAndFreeze) {
  auto m = tiny_model();
  at::Tensor before = logits_of(*m);
  auto tensors = model::attach_lora(*m, spec({"q_proj", "down_proj"}, 4, 8), 11);
  // 2 layers x 2 modules x (A, B).
  ASSERT_EQ(tensors.size(), 8u);
  for (auto& [name, t] : tensors) {
    EXPECT_TRUE(t.requires_grad()) << name;
    if (name.find("lora_B") != std::string::npos) {
      EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << "B starts at zero: " << name;
    } else {
      // nn.Linear default (kaiming_uniform a = sqrt(5)): U(-1/sqrt(in), 1/sqrt(in)).
      const double bound = 1.0 / std::sqrt(static_cast<double>(t.size(1)));
      EXPECT_LE(t.abs().max().item<double>(), bound) << name;
      EXPECT_GT(t.abs().max().item<double>(), 0.8 * bound) << name;  // really spread, not tiny
      EXPECT_EQ(t.size(0), 4);
    }
  }
  EXPECT_EQ(m->model->layer_ptrs[0]->self_attn->q_proj->lora_scaling, 2.0);  // alpha / r
  for (const auto& p : m->parameters()) EXPECT_FALSE(p.requires_grad());
  // A fresh adapter leaves the function unchanged (B = 0).
  EXPECT_TRUE(at::equal(before, logits_of(*m)));
  // The same seed gives the same init.
  auto m2 = tiny_model();
  auto t2 = model::attach_lora(*m2, spec({"q_proj", "down_proj"}, 4, 8), 11);
  for (size_t i = 0; i < tensors.size(); ++i) EXPECT_TRUE(at::equal(tensors[i].second, t2[i].second));
}

TEST(Lora, PeftFileFormat) {
  auto m = tiny_model();
  model::attach_lora(*m, spec({"q_proj", "v_proj", "gate_proj"}, 4, 16), 1);
  const std::string dir = temp_dir("format");
  model::save_adapter(dir, *m, spec({"q_proj", "v_proj", "gate_proj"}, 4, 16), "org/base-model");

  // adapter_model.safetensors: PEFT's names (PeftModel -> LoraModel -> the HF model, the
  // adapter name "default" removed), nothing else.
  std::set<std::string> expected;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "base_model.model.model.layers." + std::to_string(l) + ".";
    for (const char* mod : {"self_attn.q_proj", "self_attn.v_proj", "mlp.gate_proj"})
      for (const char* ab : {"lora_A", "lora_B"}) expected.insert(p + mod + "." + ab + ".weight");
  }
  auto stored = io::load_tensors(dir + "/adapter_model.safetensors");
  std::set<std::string> got;
  for (auto& [k, t] : stored) got.insert(k);
  EXPECT_EQ(got, expected);
  EXPECT_EQ(stored.at("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").sizes(),
            c10::IntArrayRef({4, 32}));
  EXPECT_EQ(stored.at("base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight").sizes(),
            c10::IntArrayRef({48, 4}));
  EXPECT_EQ(stored.at("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight").sizes(),
            c10::IntArrayRef({16, 4}));  // kv heads 2 x head_dim 8

  // adapter_config.json: the fields of PEFT's LoraConfig (as in its documentation and in
  // adapters saved by peft.save_pretrained), with the values PEFT gives them.
  json j = json::parse(read_file(dir + "/adapter_config.json"));
  for (const char* k : {"peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias",
                        "base_model_name_or_path", "fan_in_fan_out", "inference_mode", "modules_to_save",
                        "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern",
                        "revision", "use_rslora", "use_dora"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 4);
  EXPECT_TRUE(j["r"].is_number_integer());
  EXPECT_EQ(j["lora_alpha"], 16);
  EXPECT_EQ(j["lora_dropout"], 0.0);
  EXPECT_EQ(j["target_modules"], json({"q_proj", "v_proj", "gate_proj"}));
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["base_model_name_or_path"], "org/base-model");
  EXPECT_EQ(j["fan_in_fan_out"], false);
  EXPECT_EQ(j["inference_mode"], true);
  EXPECT_TRUE(j["modules_to_save"].is_null());
  EXPECT_EQ(j["use_dora"], false);
  EXPECT_EQ(j["use_rslora"], false);
  fs::remove_all(dir);
}

TEST(Lora, SaveLoadRoundTripAndChecks) {
  auto m = tiny_model();
  auto s = spec({"k_proj", "o_proj", "up_proj"}, 2, 5);
  s.dropout = 0.1;
  model::attach_lora(*m, s, 4);
  randomise_b(*m, 9);
  const at::Tensor with = logits_of(*m);
  const std::string dir = temp_dir("roundtrip");
  model::save_adapter(dir, *m, s, "base");

  auto m2 = tiny_model();
  const at::Tensor base = logits_of(*m2);
  model::LoraSpec loaded = model::load_adapter(dir, *m2);
  EXPECT_EQ(loaded.r, 2);
  EXPECT_EQ(loaded.alpha, 5);
  EXPECT_EQ(loaded.dropout, 0.1);
  EXPECT_EQ(loaded.target_modules, (std::vector<std::string>{"k_proj", "o_proj", "up_proj"}));
  EXPECT_TRUE(at::equal(with, logits_of(*m2)));  // dropout is off outside training
  EXPECT_FALSE(at::allclose(with, base));
  model::set_lora_enabled(*m2, false);
  EXPECT_TRUE(at::equal(base, logits_of(*m2)));  // adapters off = the base model exactly
  model::set_lora_enabled(*m2, true);
  EXPECT_TRUE(at::equal(with, logits_of(*m2)));

  // A model of other shapes: the adapter's tensors do not fit.
  auto cfg = tiny_config();
  cfg.hidden_size = 40;
  cfg.head_dim = 10;
  model::Transformer other(cfg, at::TensorOptions().dtype(at::kFloat));
  EXPECT_THROW(model::load_adapter(dir, other), InputError);

  // A tensor missing, or an unknown one.
  auto t = io::load_tensors(dir + "/adapter_model.safetensors");
  std::vector<std::pair<std::string, at::Tensor>> fewer, extra;
  for (auto& [k, v] : t) {
    extra.emplace_back(k, v);
    if (k.find("layers.1.mlp.up_proj.lora_B") == std::string::npos) fewer.emplace_back(k, v);
  }
  extra.emplace_back("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", at::zeros({2, 32}));
  io::save_tensors(dir + "/adapter_model.safetensors", fewer);
  EXPECT_THROW(model::load_adapter(dir, *tiny_model()), InputError);
  io::save_tensors(dir + "/adapter_model.safetensors", extra);
  EXPECT_THROW(model::load_adapter(dir, *tiny_model()), InputError);

  // Options PEFT has that we do not implement are refused, not ignored.
  json j = json::parse(read_file(dir + "/adapter_config.json"));
  j["use_dora"] = true;
  write_file_atomic(dir + "/adapter_config.json", j.dump());
  EXPECT_THROW(model::read_adapter_config(dir), InputError);
  j["use_dora"] = false;
  j["target_modules"] = {"q_proj", "lm_head"};
  write_file_atomic(dir + "/adapter_config.json", j.dump());
  EXPECT_THROW(model::read_adapter_config(dir), InputError);
  fs::remove_all(dir);
}

TEST(Lora, TargetAndRankValidation) {
  auto m = tiny_model();
  EXPECT_THROW(model::attach_lora(*m, spec({"q_proj", "qkv_proj"}), 0), InputError);
  // v_proj is 32 -> 16: rank 17 does not fit, 16 does.
  EXPECT_THROW(model::attach_lora(*m, spec({"v_proj"}, 17), 0), InputError);
  EXPECT_NO_THROW(model::attach_lora(*tiny_model(), spec({"v_proj"}, 16), 0));
  try {
    model::attach_lora(*m, spec({"v_proj"}, 17), 0, true, "lora.r");
    FAIL();
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("lora.r"), std::string::npos) << msg;
    EXPECT_NE(msg.find("r <= 16"), std::string::npos) << msg;
  }
}

TEST(Lora, MergeReproducesAdapterLogits) {
  auto m = tiny_model();
  auto s = spec({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 4, 16);
  model::attach_lora(*m, s, 5);
  randomise_b(*m, 6);
  const at::Tensor with = logits_of(*m);
  // Independent fold for one weight: W + (alpha / r) B A.
  auto& q = *m->model->layer_ptrs[1]->self_attn->q_proj;
  const at::Tensor expect_w = (q.weight + 4.0 * at::matmul(q.lora_B, q.lora_A)).detach().clone();
  model::merge_lora(*m);
  EXPECT_FALSE(q.lora_A.defined());
  EXPECT_TRUE(at::allclose(q.weight, expect_w, 0, 1e-6));
  const at::Tensor merged = logits_of(*m);
  EXPECT_LT((merged - with).abs().max().item<double>(), 1e-5);
}

// Qwen3 and Gemma name their attention and MLP projections as Llama does, so PEFT's
// targets and tensor names are the same: every projection of every layer gets an adapter
// under base_model.model.model.layers.L.{self_attn,mlp}.NAME, the extra norms none; the
// merged model reproduces the adapter's logits.
// Phi-3's are its fused qkv_proj and gate_up_proj besides o_proj and down_proj.
TEST(Lora, PeftNamesForQwen3GemmaAndPhi3) {
  for (const char* arch : {"qwen3", "gemma2", "gemma3", "phi3"}) {
    SCOPED_TRACE(arch);
    const bool phi3 = std::string(arch) == "phi3";
    const std::vector<std::string> all =
        phi3 ? std::vector<std::string>{"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
             : std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    model::ModelConfig c = test_util::tiny_model_config(arch);
    auto m = std::make_shared<model::Transformer>(c, at::TensorOptions().dtype(at::kFloat));
    m->init_weights(3, 0.2, true);
    model::attach_lora(*m, spec(all, 4, 16), 5);
    randomise_b(*m, 6);
    const std::string dir = temp_dir(std::string("names_") + arch);
    model::save_adapter(dir, *m, spec(all, 4, 16), "org/base");
    std::set<std::string> expected, got;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      for (const std::string& mod : all)
        for (const char* ab : {"lora_A", "lora_B"})
          expected.insert("base_model.model.model.layers." + std::to_string(l) +
                          (mod[1] == '_' || mod == "qkv_proj" ? ".self_attn." : ".mlp.") + mod + "." + ab +
                          ".weight");
    for (auto& [k, t] : io::load_tensors(dir + "/adapter_model.safetensors")) got.insert(k);
    EXPECT_EQ(got, expected);
    const at::Tensor with = logits_of(*m);
    model::merge_lora(*m);
    EXPECT_LT((logits_of(*m) - with).abs().max().item<double>(), 1e-5);
    fs::remove_all(dir);
  }
}

TEST(Lora, TrainingMovesOnlyAdapters) {
  auto m = tiny_model();
  std::vector<std::pair<std::string, at::Tensor>> base;
  for (const auto& item : m->named_parameters()) base.emplace_back(item.key(), item.value().detach().clone());
  auto s = spec({"q_proj", "v_proj", "down_proj"}, 4, 16);
  s.dropout = 0.1;
  auto tensors = model::attach_lora(*m, s, 2);
  std::vector<at::Tensor> params;
  std::vector<at::Tensor> start;
  for (auto& [n, t] : tensors) {
    params.push_back(t);
    start.push_back(t.detach().clone());
  }
  train::AdamWOptions o;
  o.lr = 1e-2;
  o.weight_decay = 0.1;
  train::AdamW opt(params, o);
  m->train();
  const at::Tensor x = ids();
  for (int i = 0; i < 3; ++i) {
    at::Tensor logits = m->logits(m->forward(x));
    at::Tensor loss = at::cross_entropy_loss(logits.view({-1, 200}), x.view({-1}));
    loss.backward();
    train::clip_grad_norm(params, 1.0);
    opt.step();
    opt.zero_grad();
  }
  for (size_t i = 0; i < params.size(); ++i) EXPECT_FALSE(at::equal(params[i], start[i])) << tensors[i].first;
  const auto now = m->named_parameters();
  for (auto& [name, t] : base) {
    EXPECT_TRUE(at::equal(now[name], t)) << name << " changed";
    EXPECT_FALSE(now[name].grad().defined()) << name << " got a gradient";
  }
}
