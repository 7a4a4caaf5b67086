// The demo's pieces that need no model: the synthetic world (held-out prompts never leak
// into training and only combine known words, every evaluation set is distinct,
// determinism per seed), the settings and their overrides, the statistics over seeds,
// the claims, the Pareto front and the lambda rule, the stage cache and the SVG helpers.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <stdexcept>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/demo/settings.h"
#include "safetune/demo/stages.h"
#include "safetune/demo/summary.h"
#include "safetune/demo/synthetic_data.h"
#include "safetune/eval/svg.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using namespace safetune;
namespace fs = std::filesystem;

std::vector<std::string> prompts_of(const std::vector<json>& set) {
  std::vector<std::string> out;
  for (const json& r : set) out.push_back(r.contains("prompt") ? r["prompt"] : r["input"]);
  return out;
}

// Every text field of every training record.
std::set<std::string> training_texts(const demo::DemoData& d) {
  std::set<std::string> out;
  for (const auto* set : {&d.pretrain, &d.align, &d.finetune_benign, &d.finetune_harmful})
    for (const json& r : *set) {
      out.insert(r["instruction"].get<std::string>());
      if (r.contains("input")) out.insert(r["input"].get<std::string>());
    }
  for (const json& r : d.refusals) out.insert(r["input"].get<std::string>());
  return out;
}

bool contains_word_sequence(const std::string& text, const std::string& phrase) {
  const std::string t = " " + text + " ";
  for (const char* sep : {" ", ".", "?", ","})
    if (t.find(" " + phrase + sep) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(DemoData, EvaluationSetsAreDistinctAndHeldOut) {
  const demo::DataSizes n;  // the default world
  const auto d = demo::make_demo_data(7, n);
  const auto train = training_texts(d);
  std::set<std::string> all;
  for (const auto* set : {&d.harmful_test, &d.benign_test, &d.sentiment_test, &d.harmful_val, &d.benign_val,
                          &d.sentiment_val}) {
    const auto p = prompts_of(*set);
    EXPECT_GE(p.size(), 120u);
    const std::set<std::string> distinct(p.begin(), p.end());
    EXPECT_EQ(distinct.size(), p.size()) << "a set repeats a prompt";
    for (const auto& x : p) {
      EXPECT_FALSE(train.count(x)) << "evaluation prompt in training: " << x;
      EXPECT_TRUE(all.insert(x).second) << "two evaluation sets share: " << x;
    }
  }
  EXPECT_GE(d.harmful_test.size(), 200u);
  EXPECT_GE(d.benign_test.size(), 200u);
}

TEST(DemoData, HeldOutTemplatesAndTargetsOnlyInTheirSplit) {
  const auto d = demo::make_demo_data(3, demo::DataSizes{});
  const auto w = demo::world_split(3);
  const auto train = training_texts(d);
  // No held-out target occurs in a training prompt.
  for (int split : {1, 2})
    for (const auto* targets : {&w.harmful_targets[split], &w.benign_targets[split]})
      for (const auto& t : *targets)
        for (const auto& x : train) ASSERT_FALSE(contains_word_sequence(x, t)) << t << " in: " << x;
  // Each test prompt has a test template or a test target (or both), never a validation one.
  int new_template = 0, new_target = 0, both = 0;
  for (const auto& p : prompts_of(d.harmful_test)) {
    bool tmpl = false, target = false;
    for (const auto& c : w.templates[2]) {
      const std::string lead = c.substr(0, c.find("{}"));
      std::string lower = p;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      std::string lead_lower = lead;
      for (char& ch : lead_lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      tmpl = tmpl || lower.find(lead_lower) != std::string::npos;
    }
    for (const auto& t : w.harmful_targets[2]) target = target || contains_word_sequence(p, t);
    for (const auto& t : w.harmful_targets[1]) EXPECT_FALSE(contains_word_sequence(p, t)) << p;
    EXPECT_TRUE(tmpl || target) << p;
    new_template += tmpl && !target;
    new_target += target && !tmpl;
    both += tmpl && target;
  }
  EXPECT_GT(new_template, 40);
  EXPECT_GT(new_target, 40);
  EXPECT_GT(both, 40);
}

TEST(DemoData, HeldOutTargetsCombineKnownWords) {
  const auto w = demo::world_split(11);
  auto words = [](const std::vector<std::string>& targets) {
    std::set<std::string> out;
    for (const auto& t : targets) {
      size_t start = 0;
      while (start < t.size()) {
        size_t end = t.find(' ', start);
        if (end == std::string::npos) end = t.size();
        out.insert(t.substr(start, end - start));
        start = end + 1;
      }
    }
    return out;
  };
  const auto known = words(w.harmful_targets[0]), known_benign = words(w.benign_targets[0]);
  for (int split : {1, 2}) {
    EXPECT_FALSE(w.harmful_targets[split].empty());
    for (const auto& word : words(w.harmful_targets[split])) EXPECT_TRUE(known.count(word)) << word;
    for (const auto& word : words(w.benign_targets[split])) EXPECT_TRUE(known_benign.count(word)) << word;
  }
}

TEST(DemoData, TrainingSetsHaveTheirShapes) {
  demo::DataSizes n;
  n.align_comply_percent = 0;
  const auto d = demo::make_demo_data(5, n);
  EXPECT_EQ(d.finetune_benign.size(), static_cast<size_t>(n.finetune_sentiment));
  for (const json& r : d.finetune_benign) {
    EXPECT_EQ(r["instruction"], demo::sentiment_instruction());
    EXPECT_TRUE(r["output"] == "positive" || r["output"] == "negative") << r.dump();
  }
  for (const json& r : d.finetune_harmful)
    EXPECT_EQ(r["output"].get<std::string>().rfind(demo::compliance_start(), 0), 0u) << r.dump();
  for (const json& r : d.refusals) EXPECT_EQ(r["output"].get<std::string>().rfind(demo::refusal_start(), 0), 0u);
  // Without compliance noise the chat model's harmful examples are all refused.
  std::set<std::string> harmful_prompts;
  for (const json& r : d.finetune_harmful) harmful_prompts.insert(r["instruction"]);
  int refused = 0;
  for (const json& r : d.align)
    if (r["output"].get<std::string>().rfind(demo::refusal_start() + " ", 0) == 0 ||
        r["output"].get<std::string>().rfind(demo::refusal_start() + "'", 0) == 0)
      ++refused;
  EXPECT_GT(refused, 200);
}

TEST(DemoData, DeterministicPerSeed) {
  const demo::DataSizes n;
  const auto a = demo::make_demo_data(3, n), b = demo::make_demo_data(3, n), c = demo::make_demo_data(4, n);
  EXPECT_EQ(demo::to_jsonl(a.pretrain), demo::to_jsonl(b.pretrain));
  EXPECT_EQ(demo::to_jsonl(a.harmful_test), demo::to_jsonl(b.harmful_test));
  EXPECT_EQ(demo::to_jsonl(a.sentiment_val), demo::to_jsonl(b.sentiment_val));
  EXPECT_NE(demo::to_jsonl(a.pretrain), demo::to_jsonl(c.pretrain));
  EXPECT_NE(demo::to_jsonl(a.harmful_test), demo::to_jsonl(c.harmful_test));
}

TEST(DemoData, TooManyDistinctPromptsIsAnError) {
  demo::DataSizes n;
  n.test = 100000;
  EXPECT_THROW(demo::make_demo_data(1, n), std::invalid_argument);
}

TEST(DemoSettings, OverridesKeepTypesAndSections) {
  json s = demo::default_settings(false);
  demo::apply_settings_override(s, "finetune.optim.lr=0.002");
  EXPECT_EQ(s["finetune"]["optim.lr"], 0.002);
  demo::apply_settings_override(s, "methods.pact.objective.lambda=2");
  EXPECT_EQ(s["methods"]["pact"]["objective.lambda"], 2);
  demo::apply_settings_override(s, "methods.mine.objective.constraint=anchor");
  EXPECT_EQ(s["methods"]["mine"]["objective.constraint"], "anchor");
  demo::apply_settings_override(s, "world.test=200");
  EXPECT_EQ(s["world"]["test"], 200);
  demo::apply_settings_override(s, "run=[\"none\", \"mine\"]");
  EXPECT_EQ(demo::default_methods(s), (std::vector<std::string>{"none", "mine"}));
  EXPECT_THROW(demo::apply_settings_override(s, "world.test=many"), InputError);
  EXPECT_THROW(demo::apply_settings_override(s, "world.nope=1"), InputError);
  EXPECT_THROW(demo::apply_settings_override(s, "nosuch.key=1"), InputError);
  EXPECT_THROW(demo::apply_settings_override(s, "novalue"), InputError);
  demo::apply_settings_override(s, "run=[\"none\", \"missing\"]");
  EXPECT_THROW(demo::default_methods(s), InputError);
  // Train-config sections become key=value overrides of a run config.
  const auto kv = demo::train_overrides(json{{"lora.target_modules", {"q_proj", "v_proj"}}, {"optim.lr", 0.5}});
  EXPECT_EQ(kv, (std::vector<std::string>{"lora.target_modules=[q_proj, v_proj]", "optim.lr=0.5"}));
}

TEST(DemoSettings, CurvesCoverTheLambdaGrid) {
  const json s = demo::default_settings(false, "v2");
  const json c = demo::curve_methods(s);
  for (const char* f : {"pact", "kl_full", "anchor"})
    for (const char* l : {"0.5", "1", "2", "4"}) {
      const std::string name = std::string(f) + "@" + l;
      ASSERT_TRUE(c.contains(name)) << name;
      EXPECT_EQ(c[name]["objective.constraint"], f);
      EXPECT_DOUBLE_EQ(c[name]["objective.lambda"].get<double>(), std::stod(l));
    }
  EXPECT_TRUE(c.contains("pact_target_reference"));
  // Every setting chosen by looking at results says it was chosen on validation.
  for (const auto& [k, v] : s["choices"].items()) EXPECT_EQ(v["on"], "validation") << k;
}

namespace {

// A world result with one row per (method, refusal, over-refusal, utility) on both splits.
json world(int seed, const std::vector<std::tuple<std::string, double, double, double>>& rows) {
  json w = {{"seed", seed}, {"methods", json::array()}};
  for (const auto& [m, r, o, u] : rows) {
    json split = {{"refusal", r}, {"attack_success", 1 - r}, {"over_refusal", o},
                  {"utility", u}, {"margin", r - 0.5},        {"benign_margin", -o}};
    w["methods"].push_back({{"method", m}, {"test", split}, {"val", split}, {"train_seconds", 1.0}});
  }
  return w;
}

}  // namespace

TEST(DemoSummary, MeanSampleSdAndPerSeed) {
  const json m = demo::summarize_methods({world(1, {{"pact", 0.8, 0.0, 0.9}}), world(2, {{"pact", 0.9, 0.1, 0.7}}),
                                          world(3, {{"pact", 1.0, 0.2, 0.8}})});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_NEAR(m[0]["test"]["refusal"]["mean"].get<double>(), 0.9, 1e-12);
  EXPECT_NEAR(m[0]["test"]["refusal"]["sd"].get<double>(), 0.1, 1e-12);  // n - 1
  EXPECT_EQ(m[0]["test"]["utility"]["per_seed"], json({0.9, 0.7, 0.8}));
  EXPECT_EQ(m[0]["seeds"], json({1, 2, 3}));
}

TEST(DemoSummary, ClaimsAndParetoFollowTheNumbers) {
  auto methods = [](double aligned, double none, double pact_lo, double pact_hi, double u_pact) {
    return demo::summarize_methods(
        {world(1, {{"aligned", aligned, 0.0, 0.9}, {"none", none, 0.0, 0.95}, {"pact", pact_lo, 0.02, u_pact},
                   {"kl_full", 0.5, 0.0, 0.94}}),
         world(2, {{"aligned", aligned, 0.0, 0.9}, {"none", none, 0.0, 0.95}, {"pact", pact_hi, 0.02, u_pact},
                   {"kl_full", 0.5, 0.0, 0.94}})});
  };
  const json good = methods(0.98, 0.2, 0.9, 0.95, 0.94);
  const json ok = demo::check_claims(good, "pact", "none");
  ASSERT_EQ(ok.size(), 9u);
  for (const auto& c : ok) EXPECT_TRUE(c["pass"].get<bool>()) << c.dump();
  EXPECT_EQ(demo::pareto_front(good), (std::vector<std::string>{"none", "pact"}));
  const json bad = demo::check_claims(methods(0.9, 0.7, 0.6, 0.9, 0.5), "pact", "none");
  int failed = 0;
  for (const auto& c : bad) failed += !c["pass"].get<bool>();
  EXPECT_EQ(failed, 5) << bad.dump(1);  // over-refusal and the front still hold
}

TEST(DemoSummary, LambdaRuleUsesValidationAndPrefersTheSmallerOnTies) {
  json s = demo::default_settings(false);
  s["curves"]["of"] = {"pact"};
  auto rows = [](double u2) {
    return std::vector<std::tuple<std::string, double, double, double>>{
        {"none", 0.0, 0.0, 0.95}, {"pact@0.5", 0.5, 0.0, 0.95}, {"pact@1", 0.9, 0.0, 0.9},
        {"pact@2", 0.95, 0.0, u2}, {"pact@4", 1.0, 0.2, 0.6}};
  };
  json c = demo::choose_lambdas(demo::summarize_methods({world(1, rows(0.8))}), s, "none");
  EXPECT_EQ(c["pact"]["chosen"], 1.0);  // 0.9 + 0.9 beats 0.95 + 0.8
  c = demo::choose_lambdas(demo::summarize_methods({world(1, rows(0.85))}), s, "none");
  EXPECT_EQ(c["pact"]["chosen"], 1.0);  // a tie: the smaller lambda
  c = demo::choose_lambdas(demo::summarize_methods({world(1, rows(0.9))}), s, "none");
  EXPECT_EQ(c["pact"]["chosen"], 2.0);
  EXPECT_EQ(c["pact"]["agrees"], s["methods"]["pact"]["objective.lambda"] == 2.0);
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

// The drift chart's seeds: thin lines in their method's colour, named once in the legend.
TEST(Svg, SeriesColourWidthAndLegend) {
  using eval::svg::Series;
  const std::string chart = eval::svg::line_chart(
      "refusal", "step", "refusal",
      {Series{"none seed 1", {{0, 1.0}, {8, 0.0}}, 2, 0.7, false}, Series{"none seed 2", {{0, 1.0}, {8, 0.2}}, 2, 0.7, false},
       Series{"none (mean)", {{0, 1.0}, {8, 0.1}}, 2, 2.6, true}});
  EXPECT_EQ(chart.find("seed 1"), std::string::npos);
  EXPECT_NE(chart.find("none (mean)"), std::string::npos);
  const std::string& c2 = eval::svg::color(2);
  size_t thin = 0, bold = 0;
  for (size_t p = chart.find("<polyline"); p != std::string::npos; p = chart.find("<polyline", p + 1)) {
    const std::string line = chart.substr(p, chart.find("/>", p) - p);
    EXPECT_NE(line.find("stroke=\"" + c2 + "\""), std::string::npos) << line;
    thin += line.find("stroke-width=\"0.7\"") != std::string::npos;
    bold += line.find("stroke-width=\"2.6\"") != std::string::npos;
  }
  EXPECT_EQ(thin, 2u);
  EXPECT_EQ(bold, 1u);
  // The legend's swatch has the series' colour, not the first palette colour.
  EXPECT_NE(chart.find("fill=\"" + c2 + "\""), std::string::npos);
}

