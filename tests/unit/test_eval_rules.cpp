// train.keep_best and train.early_stop: parsing, scores, bounds relative to the first value.
#include <gtest/gtest.h>

#include <cmath>

#include "safetune/train/eval_rules.h"

using namespace safetune::train;

TEST(EvalRules, KeepBestScoresASumAndPrefersTheEarlierOnTies) {
  const BestRule rule = *parse_keep_best("refusal+utility:max", "k");
  EXPECT_EQ(rule.metrics, (std::vector<std::string>{"refusal", "utility"}));
  EXPECT_TRUE(rule.maximize);
  EXPECT_EQ(score_of(rule, {{"refusal", 0.75}, {"utility", 0.5}, {"margin", 9}}), 1.25);
  EXPECT_EQ(score_of(rule, {{"refusal", 0.75}}), std::nullopt);  // a missing metric: no score
  EXPECT_EQ(score_of(rule, {{"refusal", 0.75}, {"utility", NAN}}), std::nullopt);
  EXPECT_TRUE(is_better(rule, 0.1, std::nullopt));
  EXPECT_TRUE(is_better(rule, 1.3, 1.25));
  EXPECT_FALSE(is_better(rule, 1.25, 1.25));
  const BestRule low = *parse_keep_best("val_ce:min", "k");
  EXPECT_TRUE(is_better(low, 1.0, 2.0));
  EXPECT_FALSE(is_better(low, 3.0, 2.0));
  EXPECT_EQ(parse_keep_best("", "k"), std::nullopt);
}

TEST(EvalRules, EarlyStopBoundsAreAbsoluteOrTimesTheFirstValue) {
  const StopRule half = *parse_early_stop("refusal<0.5x", "k");
  EXPECT_EQ(half.metric, "refusal");
  EXPECT_TRUE(half.below && half.relative);
  EXPECT_DOUBLE_EQ(stop_bound(half, 0.8), 0.4);
  EXPECT_FALSE(crosses(half, {{"refusal", 0.4}}, 0.8));  // strictly below
  EXPECT_TRUE(crosses(half, {{"refusal", 0.375}}, 0.8));
  EXPECT_FALSE(crosses(half, {{"utility", 0.0}}, 0.8));
  const StopRule above = *parse_early_stop("val_ce>4", "k");
  EXPECT_FALSE(above.below || above.relative);
  EXPECT_TRUE(crosses(above, {{"val_ce", 4.5}}, 1.0));
  EXPECT_FALSE(crosses(above, {{"val_ce", NAN}}, 1.0));
  EXPECT_EQ(parse_early_stop("", "k"), std::nullopt);
}
