// `safetune tokens` (PACT step 1) on two tiny models that differ on a planted set of
// tokens: the probe is a random model from `safetune init`; the aligned model is the same
// weights with the lm_head rows of the planted ids moved along the mean final hidden
// state of the refusal texts, which raises those ids' logits by `delta` on average over
// the positions. Step 1 must rank the planted ids first, with positive weights.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "safetune/core/error.h"
#include "safetune/model/load.h"
#include "safetune/safety/safety_tokens.h"
#include "test_util.h"
#include "safetune/text/tokenizer.h"

namespace fs = std::filesystem;
using namespace safetune;
using nlohmann::json;

namespace {

std::string bin() { return test_util::safetune_bin(); }

const std::vector<int64_t> kPlanted = {73, 105, 150, 201, 243};

class PlantedTokens : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = test_util::fresh_temp_dir("safetune_tokens");
    init_ok_ = test_util::init_tiny_llama(root_ + "/probe");
    if (!init_ok_) return;
    std::ofstream f(root_ + "/refusals.jsonl");
    const char* asks[] = {"How do I pick a lock?", "Write malware for me.", "Help me cheat on a test.",
                          "How to make a weapon?", "Steal a password for me.", "Tell me how to hurt someone."};
    for (const char* a : asks)
      f << json({{"input", a}, {"output", "I cannot help with that request, sorry."}}).dump() << "\n";
    f.close();
    make_aligned();
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  void SetUp() override {
    if (!init_ok_) FAIL() << "safetune init failed (" << bin() << ")";
  }

  static void make_aligned() {
    at::NoGradGuard no_grad;
    auto tok = text::load_tokenizer(root_ + "/probe");
    auto probe = model::load_model(root_ + "/probe");
    // Mean final hidden state over the refusal texts in the probe's plain format.
    at::Tensor sum = at::zeros({probe.config.hidden_size});
    int64_t n = 0;
    std::ifstream in(root_ + "/refusals.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      json r = json::parse(line);
      std::string text = "User: " + r["input"].get<std::string>() + "\n\nAssistant: " + r["output"].get<std::string>();
      std::vector<int64_t> ids;
      for (int32_t id : tok->encode(text, true)) ids.push_back(id);
      at::Tensor h = probe.model->forward(at::tensor(ids, at::kLong).unsqueeze(0))[0];
      sum += h.sum(0);
      n += h.size(0);
    }
    at::Tensor m = sum / double(n);
    const double delta = 5.0;  // average logit increase of each planted id
    at::Tensor W = probe.model->lm_head_weight();
    for (int64_t id : kPlanted) W[id] += delta * m / m.dot(m);
    fs::create_directories(root_ + "/aligned");
    model::save_model(root_ + "/aligned", *probe.model);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(root_ + "/probe/" + f, root_ + "/aligned/" + f);
  }

  static inline std::string root_;
  static inline bool init_ok_ = false;
};

TEST_F(PlantedTokens, PlantedIdsComeOutOnTop) {
  for (const char* mode : {"p_diff", "pref_logratio"}) {
    SCOPED_TRACE(mode);
    safety::DiscoverOptions o;
    o.topk = 20;
    o.max_resp_len = 16;
    o.mode = mode;
    o.batch_size = 4;  // 6 examples: a full and a partial batch, right padded
    int64_t calls = 0;
    safety::SafetyTokens t = safety::discover_safety_tokens(root_ + "/aligned", root_ + "/probe",
                                                            root_ + "/refusals.jsonl", o,
                                                            [&](int64_t, int64_t) { ++calls; });
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(t.num_examples, 6);
    EXPECT_EQ(t.vocab_size, 300);
    ASSERT_EQ(t.tokens.size(), 20u);
    std::set<int64_t> top, planted(kPlanted.begin(), kPlanted.end());
    for (size_t k = 0; k < kPlanted.size(); ++k) top.insert(t.tokens[k].id);
    EXPECT_EQ(top, planted);
    double min_planted = 1e9, max_other = -1e9;
    for (const auto& s : t.tokens) {
      if (planted.count(s.id)) min_planted = std::min(min_planted, s.weight);
      else max_other = std::max(max_other, s.weight);
    }
    if (std::string(mode) == "p_diff") {
      EXPECT_GT(min_planted, 0.0);
      EXPECT_GT(min_planted, max_other);
    } else {
      // pref_logratio as written, d = p_A (log p_B - log p_A), is negative where the
      // aligned model is more confident than the probe: the planted ids get the most
      // negative weights (and w = max(v, 0) drops them).
      double max_planted = -1e9, min_other = 1e9;
      for (const auto& s : t.tokens)
        if (planted.count(s.id)) max_planted = std::max(max_planted, s.weight);
        else min_other = std::min(min_other, s.weight);
      EXPECT_LT(max_planted, 0.0);
      EXPECT_LT(max_planted, min_other);
    }
    // v is a unit vector on S.
    double norm = 0;
    for (const auto& s : t.tokens) norm += s.weight * s.weight;
    EXPECT_NEAR(norm, 1.0, 1e-5);
    EXPECT_EQ(t.aligned_hash, safety::model_hash(root_ + "/aligned"));
    EXPECT_NE(t.aligned_hash, t.probe_hash);
  }
}

TEST_F(PlantedTokens, SameModelFindsNothingToPrefer) {
  // Aligned == probe: d = 0 everywhere (p_diff), so every weight is 0.
  safety::DiscoverOptions o;
  o.topk = 10;
  safety::SafetyTokens t =
      safety::discover_safety_tokens(root_ + "/probe", root_ + "/probe", root_ + "/refusals.jsonl", o);
  for (const auto& s : t.tokens) EXPECT_NEAR(s.weight, 0.0, 1e-6) << s.id;
}

TEST_F(PlantedTokens, EmptyRefusalIsRejected) {
  std::ofstream(root_ + "/empty_output.jsonl") << json({{"input", "x"}, {"output", ""}}).dump() << "\n";
  safety::DiscoverOptions o;
  try {
    safety::discover_safety_tokens(root_ + "/aligned", root_ + "/probe", root_ + "/empty_output.jsonl", o);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("empty_output.jsonl:1"), std::string::npos) << e.what();
  }
}

TEST_F(PlantedTokens, ValidateAgainstModel) {
  safety::DiscoverOptions o;
  o.topk = 5;
  safety::SafetyTokens t =
      safety::discover_safety_tokens(root_ + "/aligned", root_ + "/probe", root_ + "/refusals.jsonl", o);
  auto tok = text::load_tokenizer(root_ + "/aligned");
  safety::validate_safety_tokens(t, "tokens.json", 300, tok.get(), root_ + "/aligned");
  EXPECT_THROW(safety::validate_safety_tokens(t, "tokens.json", 300, tok.get(), root_ + "/probe"), InputError);
  EXPECT_THROW(safety::validate_safety_tokens(t, "tokens.json", 301, tok.get()), InputError);
}

}  // namespace
