// The demo's pieces that need no model: the synthetic data generator (held-out prompts
// never leak into training, determinism per seed), the stage cache, the SVG helpers and
// the claims check.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <stdexcept>

#include "safetune/core/fs.h"
#include "safetune/demo/stages.h"
#include "safetune/eval/svg.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using namespace safetune;
namespace fs = std::filesystem;

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

}  // namespace
