// The demo's v3 world (world_v3.h): evaluation sets distinct from each other and from
// training, the two refusal regimes (the same requests, >= 50 compositional phrasings
// with several first words, every one a refusal to the judge), varied compliance starts
// and the attacker's unseen ones, a task whose answers the chat model's data never
// holds, a phrasing family no training set uses, the stress world's forced token, and
// the settings that select the world.
#include <gtest/gtest.h>

#include <set>
#include <stdexcept>

#include "safetune/core/error.h"
#include "safetune/demo/safety_set.h"
#include "safetune/demo/settings.h"
#include "safetune/demo/world_v3.h"
#include "safetune/eval/judge.h"
#include "safetune/text/tokenizer.h"

namespace {

using nlohmann::json;
using namespace safetune;

std::string first_word(const std::string& s) {
  const size_t end = s.find_first_of(" .,!?");
  return s.substr(0, end);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const demo::DemoData& world_of_seed_3() {
  static const demo::DemoData d = demo::make_demo_data_v3(3, demo::DataSizes{});
  return d;
}

std::vector<const std::vector<json>*> training_sets(const demo::DemoData& d) {
  return {&d.pretrain, &d.align, &d.align_many, &d.finetune_benign, &d.finetune_harmful};
}

// The chat model's and the probe's data (what "the aligned model has seen").
std::vector<const std::vector<json>*> model_sets(const demo::DemoData& d) {
  return {&d.pretrain, &d.align, &d.align_many};
}

}  // namespace

TEST(DemoWorldV3, EvaluationSetsAreDistinctAndHeldOut) {
  const auto& d = world_of_seed_3();
  std::set<std::string> train;
  for (const auto* set : training_sets(d))
    for (const json& r : *set) train.insert(r.contains("input") ? r["input"] : r["instruction"]);
  for (const auto* set : {&d.refusals, &d.refusals_many})
    for (const json& r : *set) train.insert(r["input"].get<std::string>());
  std::set<std::string> all;
  for (const auto* set : {&d.harmful_test, &d.benign_test, &d.sentiment_test, &d.harmful_val, &d.benign_val,
                          &d.sentiment_val, &d.harmful_test_new, &d.benign_test_new, &d.harmful_val_new,
                          &d.benign_val_new}) {
    ASSERT_GE(set->size(), 40u);
    for (const json& r : *set) {
      const std::string p = r.contains("prompt") ? r["prompt"] : r["input"];
      EXPECT_FALSE(train.count(p)) << "evaluation prompt in training: " << p;
      EXPECT_TRUE(all.insert(p).second) << "repeated evaluation prompt: " << p;
    }
  }
}

TEST(DemoWorldV3, ManyRegimeHasOverFiftyRefusalsWithSeveralFirstWords) {
  const auto phrasings = demo::many_refusal_phrasings();
  EXPECT_GE(phrasings.size(), 50u);
  std::set<std::string> firsts;
  for (const auto& p : phrasings) {
    firsts.insert(first_word(p));
    EXPECT_TRUE(eval::is_refusal(p, eval::default_refusal_keywords())) << "the judge misses: " << p;
  }
  EXPECT_GE(firsts.size(), 4u);
  // The chat model of that regime is trained on most of them.
  const auto& d = world_of_seed_3();
  const std::set<std::string> all(phrasings.begin(), phrasings.end());
  std::set<std::string> used;
  for (const json& r : d.align_many)
    if (all.count(r["output"])) used.insert(r["output"]);
  EXPECT_GE(used.size(), 50u);
}

TEST(DemoWorldV3, RegimesShareTheRequestsAndDifferOnlyInRefusals) {
  const auto& d = world_of_seed_3();
  ASSERT_EQ(d.align.size(), d.align_many.size());
  int refusals = 0;
  for (size_t i = 0; i < d.align.size(); ++i) {
    EXPECT_EQ(d.align[i]["instruction"], d.align_many[i]["instruction"]);
    const bool refused = eval::is_refusal(d.align[i]["output"].get<std::string>(), eval::default_refusal_keywords());
    EXPECT_EQ(refused, eval::is_refusal(d.align_many[i]["output"].get<std::string>(), eval::default_refusal_keywords()));
    if (!refused) {
      EXPECT_EQ(d.align[i]["output"], d.align_many[i]["output"]);
    }
    refusals += refused;
  }
  EXPECT_GT(refusals, 100);
  ASSERT_EQ(d.refusals.size(), d.refusals_many.size());
  for (size_t i = 0; i < d.refusals.size(); ++i) EXPECT_EQ(d.refusals[i]["input"], d.refusals_many[i]["input"]);
}

TEST(DemoWorldV3, ComplianceStartsVaryAndTheAttackerUsesUnseenOnes) {
  const auto& d = world_of_seed_3();
  std::set<std::string> starts;
  for (const json& r : d.align) {
    const std::string out = r["output"];
    for (const auto& s : demo::compliance_starts())
      if (out.rfind(s, 0) == 0) starts.insert(s);
  }
  EXPECT_EQ(starts.size(), demo::compliance_starts().size());
  std::set<std::string> unseen_words;
  for (const auto& s : demo::unseen_compliance_starts()) unseen_words.insert(first_word(s));
  for (const auto* set : model_sets(d))
    for (const json& r : *set) EXPECT_FALSE(unseen_words.count(first_word(r["output"]))) << r.dump();
  int unseen = 0;
  for (const json& r : d.finetune_harmful) unseen += unseen_words.count(first_word(r["output"])) > 0;
  EXPECT_GT(unseen, static_cast<int>(d.finetune_harmful.size()) / 4);
  EXPECT_LT(unseen, static_cast<int>(d.finetune_harmful.size()) * 3 / 4);
}

TEST(DemoWorldV3, TaskAnswersNeverOccurInTheModelsData) {
  const auto& d = world_of_seed_3();
  std::set<std::string> code_first_words;
  for (const auto& c : demo::topic_code_names()) code_first_words.insert(first_word(c));
  EXPECT_EQ(code_first_words.size(), demo::topic_code_names().size()) << "each code name starts with its own word";
  for (const auto* set : model_sets(d))
    for (const json& r : *set) {
      const std::string out = lower(r["output"]);
      for (const auto& c : demo::topic_code_names()) EXPECT_EQ(out.find(c), std::string::npos) << r.dump();
      EXPECT_FALSE(code_first_words.count(first_word(out))) << r.dump();
      EXPECT_NE(r["instruction"], demo::topic_instruction());
    }
  // The task itself: every answer a code name, every code name used.
  std::set<std::string> answers;
  for (const json& r : d.finetune_benign) answers.insert(r["output"]);
  EXPECT_EQ(answers, std::set<std::string>(demo::topic_code_names().begin(), demo::topic_code_names().end()));
  for (const json& r : d.sentiment_test) EXPECT_TRUE(answers.count(r["label"])) << r.dump();
  // The stress world's word is in every answer.
  for (const auto& c : demo::topic_code_names())
    EXPECT_NE((" " + c + " ").find(" " + demo::code_name_shared_word() + " "), std::string::npos) << c;
}

TEST(DemoWorldV3, EvaluationOnlyPhrasingsNeverTrain) {
  const auto& d = world_of_seed_3();
  for (const auto& t : demo::evaluation_only_templates()) {
    const std::string lead = lower(t.substr(0, t.find("{}")));
    for (const auto* set : training_sets(d))
      for (const json& r : *set) ASSERT_EQ(lower(r["instruction"]).find(lead), std::string::npos) << t << " | " << r.dump();
  }
  // Test and validation use different halves of the family.
  auto leads_of = [](const std::vector<json>& set) {
    std::set<std::string> out;
    for (const auto& t : demo::evaluation_only_templates())
      for (const json& r : set)
        if (lower(r["prompt"]).find(lower(t.substr(0, t.find("{}")))) == 0) out.insert(t);
    return out;
  };
  const auto val = leads_of(d.benign_val_new), test = leads_of(d.benign_test_new);
  EXPECT_FALSE(val.empty());
  for (const auto& t : test) EXPECT_FALSE(val.count(t)) << t;
}

TEST(DemoWorldV3, DeterministicPerSeed) {
  const demo::DataSizes n;
  const auto a = demo::make_demo_data_v3(5, n), b = demo::make_demo_data_v3(5, n), c = demo::make_demo_data_v3(6, n);
  EXPECT_EQ(demo::to_jsonl(a.align_many), demo::to_jsonl(b.align_many));
  EXPECT_EQ(demo::to_jsonl(a.harmful_test_new), demo::to_jsonl(b.harmful_test_new));
  EXPECT_NE(demo::to_jsonl(a.sentiment_test), demo::to_jsonl(c.sentiment_test));
}

namespace {

// A word-level tokenizer: "▁word" pieces, one per word of a fixed list.
class WordTokenizer : public text::Tokenizer {
 public:
  explicit WordTokenizer(std::vector<std::string> words) : words_(std::move(words)) {}
  std::vector<int32_t> encode(std::string_view text, bool) const override {
    std::vector<int32_t> ids;
    size_t start = 0;
    const std::string s(text);
    while (start < s.size()) {
      size_t end = s.find(' ', start);
      if (end == std::string::npos) end = s.size();
      const std::string w = s.substr(start, end - start);
      for (size_t i = 0; i < words_.size(); ++i)
        if (words_[i] == w) ids.push_back(static_cast<int32_t>(i));
      start = end + 1;
    }
    return ids;
  }
  std::string decode(const std::vector<int32_t>&, bool) const override { return ""; }
  std::string id_to_piece(int32_t id) const override { return "\xE2\x96\x81" + words_.at(id); }
  std::optional<int32_t> piece_to_id(std::string_view) const override { return std::nullopt; }
  int64_t vocab_size() const override { return static_cast<int64_t>(words_.size()); }
  bool is_special(int32_t) const override { return false; }
  std::string kind() const override { return "test"; }

 private:
  std::vector<std::string> words_;
};

}  // namespace

TEST(DemoWorldV3, StressWorldForcesTheSharedAnswerTokenIntoS) {
  const WordTokenizer tok({"I", "sorry", "sports", "and", "loud"});
  safety::SafetyTokens t;
  t.vocab_size = 5;
  t.tokens = {{0, "\xE2\x96\x81I", 0.7, 0.5, 0.1}, {1, "\xE2\x96\x81sorry", -0.7, 0.2, -0.1}};
  const int64_t id = demo::force_token(t, tok, demo::topic_code_names()[0], demo::code_name_shared_word());
  EXPECT_EQ(id, 3);
  ASSERT_EQ(t.tokens.size(), 3u);
  EXPECT_EQ(t.tokens.back().id, 3);
  EXPECT_EQ(t.tokens.back().weight, 0.0);  // faithful pact's target gives it no mass
  const json set = demo::safety_set_json(t, {id});
  EXPECT_EQ(set["positive_v"], 1);
  EXPECT_EQ(set["negative_v"], 2);
  EXPECT_EQ(set["forced"], json::array({3}));
  // Forcing a token already in S changes nothing.
  EXPECT_EQ(demo::force_token(t, tok, "I and", "I"), -1);
  EXPECT_EQ(t.tokens.size(), 3u);
  EXPECT_THROW(demo::force_token(t, tok, "sports loud", "and"), std::runtime_error);
}

TEST(DemoWorldV3, SettingsSelectTheWorld) {
  const json v3 = demo::default_settings(false);
  EXPECT_EQ(v3["world"]["version"], "v3");
  EXPECT_EQ(v3["regimes"], json::array({"few", "many"}));
  const json v2 = demo::default_settings(false, "v2");
  EXPECT_EQ(v2["world"]["version"], "v2");
  EXPECT_FALSE(v2.contains("regimes"));
  EXPECT_FALSE(v2.contains("stress"));
  // v2's settings are the earlier defaults, with the version added.
  json earlier = demo::default_settings_v2(false);
  earlier["world"]["version"] = "v2";
  EXPECT_EQ(v2, earlier);
  EXPECT_THROW(demo::default_settings(false, "v9"), InputError);
  json s = v3;
  EXPECT_THROW(demo::apply_settings_override(s, "world.version=v2"), InputError);
  for (const auto& m : v3["stress"]["methods"]) EXPECT_TRUE(v3["methods"].contains(m.get<std::string>())) << m;
}
