// The log (core/log.h): placeholders filled in order with the format specs used in the
// code, levels that drop lines below them, and a sink that receives whole lines.
#include <gtest/gtest.h>

#include <sstream>

#include "safetune/core/log.h"

namespace {

using namespace safetune;

TEST(Log, FormatsPlaceholdersInOrder) {
  EXPECT_EQ(log::format("{} of {} at {}", 3, 8, "x"), "3 of 8 at x");
  EXPECT_EQ(log::format("loss {:.4f}", 0.123456), "loss 0.1235");
  EXPECT_EQ(log::format("{:.6g} {:.3e}", 1234567.0, 0.00012345), "1.23457e+06 1.234e-04");
  EXPECT_EQ(log::format("no placeholders"), "no placeholders");
  EXPECT_EQ(log::format("{} {}", 1), "1 {}");  // too few values: the rest stays as written
}

TEST(Log, LevelsAndSink) {
  std::ostringstream out;
  log::set_sink(&out);
  const log::Level before = log::level();
  log::set_level(log::Level::warn);
  log::info("dropped {}", 1);
  log::warn("kept {}", 2);
  log::set_level(before);
  log::set_sink(nullptr);
  const std::string text = out.str();
  EXPECT_EQ(text.find("dropped"), std::string::npos);
  EXPECT_NE(text.find("] [warning] kept 2\n"), std::string::npos) << text;
}

}  // namespace
