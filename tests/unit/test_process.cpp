// Child processes: exit statuses in the order given, a signal as 128 + its number, an
// executable that cannot start as 127, and never more than `jobs` running at once.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "safetune/core/process.h"
#include "test_util.h"

using namespace safetune;

TEST(Processes, StatusesInOrder) {
  const auto st = run_processes({{"/bin/sh", "-c", "exit 3"},
                                 {"/bin/sh", "-c", "true"},
                                 {"/bin/sh", "-c", "kill -9 $$"},
                                 {"/nonexistent/program"}},
                                2);
  EXPECT_EQ(st, (std::vector<int>{3, 0, 128 + 9, 127}));
}

TEST(Processes, AtMostJobsAtOnce) {
  // Each child appends "+" on start and "-" on exit; with one job they never overlap.
  const std::string dir = test_util::fresh_temp_dir("safetune_processes");
  const std::string log = dir + "/log";
  const std::string body = "echo + >> " + log + "; sleep 0.2; echo - >> " + log;
  const auto st = run_processes({{"/bin/sh", "-c", body}, {"/bin/sh", "-c", body}, {"/bin/sh", "-c", body}}, 1);
  EXPECT_EQ(st, (std::vector<int>{0, 0, 0}));
  std::ifstream f(log);
  std::string all, line;
  while (std::getline(f, line)) all += line;
  EXPECT_EQ(all, "+-+-+-");
}
