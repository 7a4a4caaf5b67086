// The demo's pieces that need no model: the synthetic data generator (held-out prompts
// never leak into training, determinism per seed), the stage cache, the SVG helpers and
// the claims check.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <stdexcept>

#include "safetune/core/fs.h"
#include "safetune/demo/report.h"
#include "safetune/demo/stages.h"
#include "safetune/demo/synthetic_data.h"
#include "safetune/eval/svg.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using namespace safetune;
namespace fs = std::filesystem;

demo::DataSizes small_sizes() {
  demo::DataSizes n;
  n.pretrain_benign = 200;
  n.pretrain_harmful = 80;
  n.align_benign = 100;
  n.align_refusals = 80;
  n.refusals = 40;
  n.sentiment_train = 150;
  n.finetune_other = 50;
  n.finetune_harmful = 60;
  n.harmful_test = 60;
  n.sentiment_test = 80;
  return n;
}

// Every text field of every training record.
std::vector<std::string> training_texts(const demo::DemoData& d) {
  std::vector<std::string> out;
  for (const auto* set : {&d.pretrain, &d.align, &d.finetune_benign, &d.finetune_harmful, &d.refusals})
    for (const json& r : *set)
      for (const auto& [k, v] : r.items())
        if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

bool matches_template(const std::string& text, const std::string& tmpl) {
  const size_t hole = tmpl.find("{}");
  const std::string pre = tmpl.substr(0, hole), post = tmpl.substr(hole + 2);
  return text.size() >= pre.size() + post.size() && text.compare(0, pre.size(), pre) == 0 &&
         text.compare(text.size() - post.size(), post.size(), post) == 0;
}

TEST(DemoData, HeldOutTemplatesAndTargetsNeverInTraining) {
  const auto d = demo::make_demo_data(7, small_sizes());
  const auto texts = training_texts(d);
  ASSERT_GT(texts.size(), 1000u);
  for (const std::string& t : texts) {
    for (const std::string& target : demo::harmful_targets(true))
      EXPECT_EQ(t.find(target), std::string::npos) << "held-out target '" << target << "' in training text: " << t;
    for (const std::string& tmpl : demo::harmful_templates(true))
      EXPECT_FALSE(matches_template(t, tmpl)) << "held-out template '" << tmpl << "' in training text: " << t;
  }
}

TEST(DemoData, HarmfulTestPromptsUseOnlyHeldOutParts) {
  const auto d = demo::make_demo_data(7, small_sizes());
  ASSERT_EQ(d.harmful_test.size(), 60u);
  std::set<std::string> all_held_out;
  for (const auto& tmpl : demo::harmful_templates(true))
    for (const auto& target : demo::harmful_targets(true)) {
      std::string p = tmpl;
      p.replace(p.find("{}"), 2, target);
      all_held_out.insert(p);
    }
  for (const json& r : d.harmful_test) EXPECT_TRUE(all_held_out.count(r["prompt"].get<std::string>())) << r.dump();
  // And the training sets' harmful prompts are all built from the training halves.
  std::set<std::string> train_targets(demo::harmful_targets(false).begin(), demo::harmful_targets(false).end());
  for (const json& r : d.finetune_harmful) {
    bool found = false;
    for (const auto& tmpl : demo::harmful_templates(false))
      for (const auto& target : train_targets) {
        std::string p = tmpl;
        p.replace(p.find("{}"), 2, target);
        found = found || p == r["instruction"].get<std::string>();
      }
    EXPECT_TRUE(found) << r.dump();
  }
}

TEST(DemoData, SentimentTestReviewsAreNotTrainingReviews) {
  const auto d = demo::make_demo_data(7, small_sizes());
  std::set<std::string> train_reviews;
  for (const json& r : d.finetune_benign)
    if (r["instruction"] == demo::sentiment_instruction()) train_reviews.insert(r["input"].get<std::string>());
  ASSERT_GT(train_reviews.size(), 20u);
  int positive = 0;
  for (const json& r : d.sentiment_test) {
    EXPECT_FALSE(train_reviews.count(r["input"].get<std::string>())) << r.dump();
    const std::string label = r["label"].get<std::string>();
    ASSERT_TRUE(label == "positive" || label == "negative") << label;
    positive += label == "positive";
  }
  EXPECT_GT(positive, 20);  // both labels present in quantity (80 reviews, p = 0.5)
  EXPECT_LT(positive, 60);
}

TEST(DemoData, DeterministicPerSeed) {
  const auto a = demo::make_demo_data(3, small_sizes());
  const auto b = demo::make_demo_data(3, small_sizes());
  const auto c = demo::make_demo_data(4, small_sizes());
  EXPECT_EQ(demo::to_jsonl(a.pretrain), demo::to_jsonl(b.pretrain));
  EXPECT_EQ(demo::to_jsonl(a.harmful_test), demo::to_jsonl(b.harmful_test));
  EXPECT_EQ(demo::to_jsonl(a.sentiment_test), demo::to_jsonl(b.sentiment_test));
  EXPECT_NE(demo::to_jsonl(a.pretrain), demo::to_jsonl(c.pretrain));
  EXPECT_NE(demo::to_jsonl(a.finetune_benign), demo::to_jsonl(c.finetune_benign));
}

TEST(DemoData, CorpusHoldsNoEvaluationText) {
  const auto d = demo::make_demo_data(5, small_sizes());
  std::set<std::string> corpus;
  for (const auto& l : demo::corpus_lines(d)) corpus.insert(l);
  for (const json& r : d.harmful_test) EXPECT_FALSE(corpus.count(r["prompt"].get<std::string>()));
  for (const json& r : d.sentiment_test) EXPECT_FALSE(corpus.count(r["input"].get<std::string>()));
}

TEST(StageCache, SecondRunIsCachedAndChangedInputsRebuild) {
  const std::string root = test_util::fresh_temp_dir("stage_cache");
  demo::StageCache cache(root + "/stages", "test");
  int builds = 0;
  auto build = [&](const std::string& dir) {
    ++builds;
    write_file_atomic(dir + "/out.txt", "x");
  };
  const auto a = cache.run("s", {{"n", 1}}, build);
  EXPECT_FALSE(a.cached);
  const auto b = cache.run("s", {{"n", 1}}, build);
  EXPECT_TRUE(b.cached);
  EXPECT_EQ(a.dir, b.dir);
  EXPECT_EQ(builds, 1);
  const auto c = cache.run("s", {{"n", 2}}, build);
  EXPECT_FALSE(c.cached);
  EXPECT_NE(c.dir, a.dir);
  EXPECT_EQ(builds, 2);
  // A different salt (program revision) never reuses a result.
  demo::StageCache other(root + "/stages", "test2");
  EXPECT_NE(other.key("s", {{"n", 1}}), a.key);
  // A failing build leaves nothing that looks finished.
  EXPECT_THROW(cache.run("s", {{"n", 3}}, [](const std::string&) { throw std::runtime_error("boom"); }),
               std::runtime_error);
  const std::string failed = root + "/stages/s-" + cache.key("s", {{"n", 3}}).substr(0, 12);
  EXPECT_FALSE(fs::exists(failed));
  EXPECT_FALSE(fs::exists(failed + ".tmp"));
  fs::remove_all(root);
}

TEST(Svg, EscapesTextAndDrawsEverySeries) {
  EXPECT_EQ(eval::svg::escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  const std::string chart = eval::svg::line_chart(
      "loss <ce>", "step", "CE", {{"none", {{0, 2.0}, {1, 1.0}}}, {"pact", {{0, 2.5}, {1, 1.5}, {2, NAN}}}});
  EXPECT_EQ(chart.rfind("<svg", 0), 0u);
  EXPECT_NE(chart.find("loss &lt;ce&gt;"), std::string::npos);
  size_t lines = 0;
  for (size_t p = chart.find("<polyline"); p != std::string::npos; p = chart.find("<polyline", p + 1)) ++lines;
  EXPECT_EQ(lines, 2u);
  EXPECT_EQ(chart.find("nan"), std::string::npos);
  const std::string page = eval::svg::html_page("a & b", chart);
  EXPECT_NE(page.find("<title>a &amp; b</title>"), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos);
}

TEST(DemoReport, ClaimsFollowTheNumbers) {
  auto results = [](double aligned, double none, double pact, double u_none, double u_pact) {
    json r = {{"methods", json::array()}};
    r["methods"].push_back({{"method", "aligned"}, {"refusal_rate", aligned}, {"utility", 0.5}});
    r["methods"].push_back({{"method", "none"}, {"refusal_rate", none}, {"utility", u_none}});
    r["methods"].push_back({{"method", "pact"}, {"refusal_rate", pact}, {"utility", u_pact}});
    return r;
  };
  const json ok = demo::check_claims(results(0.97, 0.40, 0.90, 0.90, 0.88));
  ASSERT_EQ(ok.size(), 4u);
  for (const auto& c : ok) EXPECT_TRUE(c["pass"].get<bool>()) << c.dump();
  const json bad = demo::check_claims(results(0.94, 0.70, 0.80, 0.90, 0.85));
  ASSERT_EQ(bad.size(), 4u);
  for (const auto& c : bad) EXPECT_FALSE(c["pass"].get<bool>()) << c.dump();
}

}  // namespace
