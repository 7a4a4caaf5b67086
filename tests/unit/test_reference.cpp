// The constraint's reference sources on a tiny LoRA model made by `safetune init`:
// copy (a second frozen model), adapter_off (the adapters switched off) and cache (a file
// from build_ref_cache) give the same constraint loss on the same batch; a stale cache is
// refused naming the hash that differs; adapter_off without LoRA is refused (by the
// config's validation); training
// with pact logs its terms and resumes exactly.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/data/batch.h"
#include "safetune/io/safetensors.h"
#include "safetune/io/tensor_io.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/text/tokenizer.h"
#include "safetune/train/config.h"
#include "safetune/train/objective.h"
#include "safetune/train/ref_cache.h"
#include "safetune/train/reference.h"
#include "safetune/train/run_data.h"
#include "safetune/train/setup.h"
#include "safetune/train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace safetune;
using nlohmann::json;

namespace {

class ReferenceTest : public test_util::TinyRun<ReferenceTest> {
 public:
  static constexpr const char* kName = "safetune_reference";
  static void write_data(const std::string& root) { test_util::write_constraint_data(root, 10); }
  static std::vector<std::string> overrides(const std::string& root) {
    return {"objective.constraint=pact", "objective.tokens=" + root + "/tokens.json",
            "objective.ref_cache=" + root + "/ref.safetensors"};
  }

 protected:
  static void write_tokens(const std::string& path, const std::vector<int64_t>& ids, double shift) {
    test_util::write_hand_tokens(root_ + "/model", path, ids, shift);
  }
};

}  // namespace

TEST_F(ReferenceTest, CopyAdapterOffAndCacheGiveTheSameLoss) {
  at::set_num_threads(1);
  train::RunConfig cfg = config("same", {"lora.dropout=0", "train.batch_size=4"});
  train::build_ref_cache(cfg, cfg.objective.ref_cache);

  // The policy: base + LoRA with random (non-zero) B so that it differs from the reference.
  model::LoadedModel loaded = model::load_model(cfg.model.path);
  model::Transformer& m = *loaded.model;
  model::LoraSpec spec;
  spec.r = cfg.lora.r;
  spec.alpha = cfg.lora.alpha;
  spec.target_modules = {"q_proj", "v_proj", "up_proj"};
  auto params = model::attach_lora(m, spec, 7);
  {
    at::NoGradGuard ng;
    at::manual_seed(3);
    for (auto& [name, t] : params)
      if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.5);
  }
  m.train();
  auto tok = text::load_tokenizer(cfg.model.path);
  auto examples = data::tokenize_records(train::select_records(cfg.data), *tok, train::chat_template_for(cfg.model),
                                         cfg.data.max_length);
  data::Batcher batcher(examples, 4, 42, /*shuffle=*/true, false, data::pad_id_for(*tok));
  const data::Batch batch = batcher.batch(1, 1);  // shuffled: cache rows are found by example index
  ASSERT_NE(batch.indices, (std::vector<int64_t>{4, 5, 6, 7}));

  for (const char* mix : {"gated", "full", "post"}) {
    std::map<std::string, double> term, gate;
    std::map<std::string, std::vector<at::Tensor>> grads;
    for (const char* ref : {"copy", "adapter_off", "cache"}) {
      cfg.objective.reference = *train::parse_name<train::ReferenceKind>(ref);
      cfg.objective.reference_mix = *loss::parse_name<loss::ReferenceMix>(mix);
      auto c = train::setup_objective(cfg, m, tok.get());
      ASSERT_EQ(c.reference->name(), ref);
      train::LossTerms lt = train::compute_objective(c, m, batch);
      ASSERT_EQ(lt.terms.size(), 3u);
      EXPECT_EQ(lt.terms[1].first, "pact");
      EXPECT_EQ(lt.terms[2].first, "gate");
      term[ref] = lt.terms[1].second.item<double>();
      gate[ref] = lt.terms[2].second.item<double>();
      EXPECT_NEAR(lt.total.item<double>(), lt.terms[0].second.item<double>() + cfg.objective.lambda * term[ref], 1e-6);
      lt.total.backward();
      for (auto& [n, p] : params) {
        grads[ref].push_back(p.grad().clone());
        p.mutable_grad() = at::Tensor();
      }
      // The adapters are back on after the reference pass, and the module in training mode.
      EXPECT_TRUE(m.is_training());
    }
    EXPECT_GT(term["copy"], 1e-4) << mix << ": the policy differs from the reference, so the KL is not 0";
    for (const char* ref : {"adapter_off", "cache"}) {
      EXPECT_NEAR(term[ref], term["copy"], 1e-5) << mix << " " << ref;
      EXPECT_NEAR(gate[ref], gate["copy"], 1e-5) << mix << " " << ref;
      for (size_t k = 0; k < grads[ref].size(); ++k)
        EXPECT_LT((grads[ref][k] - grads["copy"][k]).abs().max().item<double>(), 1e-5) << mix << " " << ref;
    }
    if (std::string(mix) == "full") {
      EXPECT_EQ(gate["copy"], 0.0);
    }
    if (std::string(mix) == "post") {
      EXPECT_EQ(gate["copy"], 1.0);
    }
  }

  // With the adapters at 0 the policy is the reference: kl_full is 0 from both sources
  // that can serve it (pact is not: its target q reweights the reference by w).
  {
    at::NoGradGuard ng;
    for (auto& [name, t] : params)
      if (name.find("lora_B") != std::string::npos) t.zero_();
  }
  cfg.objective.constraint = loss::ConstraintKind::kl_full;
  for (const char* ref : {"copy", "adapter_off"}) {
    cfg.objective.reference = *train::parse_name<train::ReferenceKind>(ref);
    auto c = train::setup_objective(cfg, m, tok.get());
    EXPECT_NEAR(train::compute_objective(c, m, batch).terms.at(1).second.item<double>(), 0.0, 1e-6)
        << ref;
  }
  // pact with objective.target = reference (q is the reference on S, v only selects S)
  // and the full-context reference is 0 there too; PACT's weighted q is not.
  cfg.objective.constraint = loss::ConstraintKind::pact;
  cfg.objective.reference = train::ReferenceKind::adapter_off;
  cfg.objective.reference_mix = loss::ReferenceMix::full;
  for (const char* target : {"reference", "weighted"}) {
    cfg.objective.target = *train::parse_name<train::Target>(target);
    auto c = train::setup_objective(cfg, m, tok.get());
    const double term = train::compute_objective(c, m, batch).terms.at(1).second.item<double>();
    if (std::string(target) == "reference") EXPECT_NEAR(term, 0.0, 1e-6);
    else EXPECT_GT(term, 1e-3);
  }
  cfg.objective.target = train::Target::weighted;
  {
    at::NoGradGuard ng;
    at::manual_seed(4);
    for (auto& [name, t] : params)
      if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.5);
  }

  // kl_full and anchor: copy and adapter_off agree; the cache is refused.
  for (const char* constraint : {"kl_full", "anchor"}) {
    std::map<std::string, double> term;
    for (const char* ref : {"copy", "adapter_off"}) {
      cfg.objective.constraint = *loss::parse_name<loss::ConstraintKind>(constraint);
      cfg.objective.reference = *train::parse_name<train::ReferenceKind>(ref);
      auto c = train::setup_objective(cfg, m, tok.get());
      train::LossTerms lt = train::compute_objective(c, m, batch);
      term[ref] = lt.terms.at(1).second.item<double>();
    }
    EXPECT_GT(term["copy"], 1e-6) << constraint;
    EXPECT_NEAR(term["adapter_off"], term["copy"], 1e-5) << constraint;
    cfg.objective.reference = train::ReferenceKind::cache;
    EXPECT_NE(test_util::input_error_of([&] { train::validate(cfg); }).find("whole vocabulary"),
              std::string::npos)
        << constraint;
  }
}

// safety_mass reads the reference's S logits plus its log-sum-exps over the vocabulary: a
// live reference (copy, adapter_off) computes them in row chunks, the cache stores them.
// All three give the same loss, terms and gradients; with the adapters at 0 the loss is 0
// end to end; a cache at another temperature, or one without log-sum-exps (format v1),
// is refused naming the file, while pact still reads the v1 cache.
TEST_F(ReferenceTest, SafetyMassCachedAndLiveReferencesAgree) {
  at::set_num_threads(1);
  train::RunConfig cfg = config("mass", {"lora.dropout=0", "train.batch_size=4", "objective.constraint=safety_mass"});
  // The kind's defaults: temperature 1, the full-context reference.
  EXPECT_EQ(cfg.objective.temperature, 1.0);
  EXPECT_EQ(cfg.objective.reference_mix, loss::ReferenceMix::full);
  cfg.objective.ref_cache = root_ + "/mass.safetensors";
  train::build_ref_cache(cfg, cfg.objective.ref_cache);

  model::LoadedModel loaded = model::load_model(cfg.model.path);
  model::Transformer& m = *loaded.model;
  model::LoraSpec spec;
  spec.target_modules = {"q_proj", "v_proj", "up_proj"};
  auto params = model::attach_lora(m, spec, 7);
  auto set_B = [&](double std) {
    at::NoGradGuard ng;
    at::manual_seed(3);
    for (auto& [name, t] : params)
      if (name.find("lora_B") != std::string::npos) std > 0 ? (void)t.normal_(0, std) : (void)t.zero_();
  };
  set_B(0.5);
  m.train();
  auto tok = text::load_tokenizer(cfg.model.path);
  auto examples = data::tokenize_records(train::select_records(cfg.data), *tok, train::chat_template_for(cfg.model),
                                         cfg.data.max_length);
  data::Batcher batcher(examples, 4, 42, /*shuffle=*/true, false, data::pad_id_for(*tok));
  const data::Batch batch = batcher.batch(1, 1);

  for (const char* mix : {"full", "gated"}) {
    std::map<std::string, std::vector<double>> terms;
    std::map<std::string, std::vector<at::Tensor>> grads;
    for (const char* ref : {"copy", "adapter_off", "cache"}) {
      cfg.objective.reference = *train::parse_name<train::ReferenceKind>(ref);
      cfg.objective.reference_mix = *loss::parse_name<loss::ReferenceMix>(mix);
      auto c = train::setup_objective(cfg, m, tok.get());
      train::LossTerms lt = train::compute_objective(c, m, batch);
      ASSERT_EQ(lt.terms.size(), 5u);
      const std::vector<std::string> names = {"ce", "safety_mass", "gate", "mass_term", "shape_term"};
      for (size_t i = 0; i < names.size(); ++i) {
        EXPECT_EQ(lt.terms[i].first, names[i]);
        terms[ref].push_back(lt.terms[i].second.item<double>());
      }
      // The two parts add up to the loss (T = 1).
      EXPECT_NEAR(terms[ref][3] + terms[ref][4], terms[ref][1], 1e-5) << mix << " " << ref;
      lt.total.backward();
      for (auto& [n, p] : params) {
        grads[ref].push_back(p.grad().clone());
        p.mutable_grad() = at::Tensor();
      }
    }
    EXPECT_GT(terms["copy"][1], 1e-4) << mix << ": the policy differs from the reference";
    EXPECT_GT(terms["copy"][3], 0.0) << mix;
    for (const char* ref : {"adapter_off", "cache"}) {
      for (size_t i = 1; i < terms[ref].size(); ++i) EXPECT_NEAR(terms[ref][i], terms["copy"][i], 1e-5) << mix << " " << ref << " term " << i;
      for (size_t k = 0; k < grads[ref].size(); ++k)
        EXPECT_LT((grads[ref][k] - grads["copy"][k]).abs().max().item<double>(), 1e-5) << mix << " " << ref;
    }
  }

  // Adapters at 0: the policy is the reference, and the loss is 0 from every source.
  set_B(0);
  cfg.objective.reference_mix = loss::ReferenceMix::full;
  for (const char* ref : {"copy", "adapter_off", "cache"}) {
    cfg.objective.reference = *train::parse_name<train::ReferenceKind>(ref);
    auto c = train::setup_objective(cfg, m, tok.get());
    EXPECT_NEAR(train::compute_objective(c, m, batch).terms.at(1).second.item<double>(), 0.0, 1e-6) << ref;
  }

  // The cache's log-sum-exps are at temperature 1: a run at 2 is refused by name.
  cfg.objective.reference = train::ReferenceKind::cache;
  cfg.objective.temperature = 2.0;
  std::string e = test_util::input_error_of([&] { train::setup_objective(cfg, m, tok.get()); });
  EXPECT_NE(e.find("mass.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("temperature"), std::string::npos) << e;
  cfg.objective.temperature = 1.0;

  // A cache of the previous format (no log-sum-exps): refused for safety_mass, read for pact.
  const std::string old_path = root_ + "/mass_v1.safetensors";
  {
    std::map<std::string, at::Tensor> t = io::load_tensors(cfg.objective.ref_cache);
    std::map<std::string, std::string> meta;
    {
      io::SafetensorsFile f(cfg.objective.ref_cache);
      meta = f.metadata();
    }
    meta["format"] = "safetune.ref_cache.v1";
    meta.erase("lse_temperature");
    std::vector<std::pair<std::string, at::Tensor>> keep;
    for (const auto& [k, v] : t)
      if (k != "lse_full" && k != "lse_post") keep.emplace_back(k, v);
    io::save_tensors(old_path, keep, meta);
  }
  cfg.objective.ref_cache = old_path;
  e = test_util::input_error_of([&] { train::setup_objective(cfg, m, tok.get()); });
  EXPECT_NE(e.find("mass_v1.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("lacks the log-sum-exps"), std::string::npos) << e;
  cfg.objective.constraint = loss::ConstraintKind::pact;
  cfg.objective.temperature = 2.0;
  auto c = train::setup_objective(cfg, m, tok.get());
  EXPECT_TRUE(std::isfinite(train::compute_objective(c, m, batch).terms.at(1).second.item<double>()));
}

TEST_F(ReferenceTest, StaleCacheIsRefusedNamingTheHash) {
  train::RunConfig cfg = config("stale", {"objective.reference=cache"});
  cfg.objective.ref_cache = root_ + "/stale.safetensors";
  fs::copy_file(root_ + "/train.jsonl", root_ + "/train_copy.jsonl", fs::copy_options::overwrite_existing);
  fs::copy_file(root_ + "/tokens.json", root_ + "/tokens_copy.json", fs::copy_options::overwrite_existing);
  cfg.data.train = root_ + "/train_copy.jsonl";
  cfg.objective.tokens = root_ + "/tokens_copy.json";
  train::build_ref_cache(cfg, cfg.objective.ref_cache);
  model::LoadedModel loaded = model::load_model(cfg.model.path);
  model::attach_lora(*loaded.model, model::LoraSpec{}, 1);
  auto tok = text::load_tokenizer(cfg.model.path);
  // Fresh: accepted.
  EXPECT_NO_THROW(train::setup_objective(cfg, *loaded.model, tok.get()));
  // The dataset changes.
  std::ofstream(root_ + "/train_copy.jsonl", std::ios::app)
      << json({{"instruction", "one more"}, {"output", "red"}}).dump() << "\n";
  std::string e = test_util::input_error_of([&] { train::setup_objective(cfg, *loaded.model, tok.get()); });
  EXPECT_NE(e.find("data_hash"), std::string::npos) << e;
  EXPECT_NE(e.find("stale.safetensors"), std::string::npos) << e;
  fs::copy_file(root_ + "/train.jsonl", root_ + "/train_copy.jsonl", fs::copy_options::overwrite_existing);
  EXPECT_NO_THROW(train::setup_objective(cfg, *loaded.model, tok.get()));
  // tokens.json changes (other weights, same ids).
  write_tokens(root_ + "/tokens_copy.json", {5, 17, 42, 99, 123, 250}, 0.1);
  e = test_util::input_error_of([&] { train::setup_objective(cfg, *loaded.model, tok.get()); });
  EXPECT_NE(e.find("tokens_hash"), std::string::npos) << e;
  fs::copy_file(root_ + "/tokens.json", root_ + "/tokens_copy.json", fs::copy_options::overwrite_existing);
  // max_length changes.
  cfg.data.max_length += 1;
  e = test_util::input_error_of([&] { train::setup_objective(cfg, *loaded.model, tok.get()); });
  EXPECT_NE(e.find("tokenizer_hash"), std::string::npos) << e;
  cfg.data.max_length -= 1;
  // A missing cache file.
  cfg.objective.ref_cache = root_ + "/none.safetensors";
  e = test_util::input_error_of([&] { train::setup_objective(cfg, *loaded.model, tok.get()); });
  EXPECT_NE(e.find("none.safetensors"), std::string::npos) << e;
}

TEST_F(ReferenceTest, AdapterOffWithoutLoraIsRefused) {
  std::string e = test_util::input_error_of([&] { config("nolora", {"lora.enabled=false", "objective.reference=adapter_off"}); });
  EXPECT_NE(e.find("adapter_off"), std::string::npos) << e;
  // Also when the config is assembled in code: its validation, which the trainer's
  // set-up runs first.
  train::RunConfig cfg = config("nolora", {"lora.enabled=false"});
  cfg.objective.reference = train::ReferenceKind::adapter_off;
  e = test_util::input_error_of([&] { train::validate(cfg); });
  EXPECT_NE(e.find("adapter_off needs LoRA"), std::string::npos) << e;
  e = test_util::input_error_of([&] { train::setup_run(cfg); });
  EXPECT_NE(e.find("adapter_off needs LoRA"), std::string::npos) << e;
  model::LoadedModel loaded = model::load_model(cfg.model.path);
  // auto without LoRA is a copy.
  cfg.objective.reference = train::ReferenceKind::by_lora;
  EXPECT_EQ(train::setup_objective(cfg, *loaded.model, nullptr).reference->name(), "copy");
}

TEST_F(ReferenceTest, TokensForAnotherVocabularyAreRefused) {
  safety::SafetyTokens t = safety::read_safety_tokens(root_ + "/tokens.json");
  t.vocab_size = 512;
  safety::write_safety_tokens(root_ + "/tokens_other.json", t);
  train::RunConfig cfg = config("othervocab", {"objective.tokens=" + root_ + "/tokens_other.json"});
  model::LoadedModel loaded = model::load_model(cfg.model.path);
  model::attach_lora(*loaded.model, model::LoraSpec{}, 1);
  std::string e = test_util::input_error_of([&] { train::setup_objective(cfg, *loaded.model, nullptr); });
  EXPECT_NE(e.find("tokens_other.json"), std::string::npos) << e;
}

TEST_F(ReferenceTest, TrainingWithPactLogsItsTermsAndResumesExactly) {
  const std::vector<std::string> o = {"train.max_steps=6", "lora.dropout=0.1", "train.batch_size=2",
                                      "optim.lr=1e-2", "objective.reference=adapter_off", "objective.lambda=0.5"};
  auto straight = train::run_training(config("pact_straight", o), quiet());
  ASSERT_EQ(straight.exit_code, 0);
  ASSERT_EQ(straight.steps, 6);
  auto ms = metrics("pact_straight");
  ASSERT_FALSE(ms.empty());
  for (const auto& m : ms) {
    for (const char* k : {"ce", "pact", "gate", "total"}) ASSERT_TRUE(m["loss"].contains(k)) << k << " in " << m.dump();
    EXPECT_NEAR(m["loss"]["total"].get<double>(),
                m["loss"]["ce"].get<double>() + 0.5 * m["loss"]["pact"].get<double>(), 1e-5);
    EXPECT_GE(m["loss"]["gate"].get<double>(), 0.0);
    EXPECT_LE(m["loss"]["gate"].get<double>(), 1.0);
  }
  // Even at B = 0 the post-only reference differs from the policy, so pact is not 0.
  EXPECT_GT(ms.front()["loss"]["pact"].get<double>(), 1e-6);

  ASSERT_TRUE(train::run_training(config("pact_resumed", o), quiet(3)).interrupted);
  auto with_resume = o;
  with_resume.push_back("train.resume=auto");
  ASSERT_EQ(train::run_training(config("pact_resumed", with_resume), quiet()).steps, 6);
  auto a = io::load_tensors(root_ + "/pact_straight/adapter/adapter_model.safetensors");
  auto b = io::load_tensors(root_ + "/pact_resumed/adapter/adapter_model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (auto& [k, v] : a) EXPECT_TRUE(at::equal(v, b.at(k))) << k;
  auto mr = metrics("pact_resumed");
  ASSERT_EQ(ms.size(), mr.size());
  for (size_t i = 0; i < ms.size(); ++i) EXPECT_EQ(ms[i]["loss"], mr[i]["loss"]) << "step " << i + 1;

  // The same run with a cache and with a copy trains (one step each).
  train::RunConfig cc = config("pact_cache", {"train.max_steps=2", "objective.reference=cache"});
  train::build_ref_cache(cc, cc.objective.ref_cache);
  EXPECT_EQ(train::run_training(cc, quiet()).exit_code, 0);
  EXPECT_EQ(train::run_training(config("pact_copy", {"train.max_steps=2", "objective.reference=copy"}), quiet()).exit_code,
            0);
}
