// The demo's claims: each holds exactly when its numbers say so, whichever way the metric runs.
#include "lofi/demo/claims.h"

#include <gtest/gtest.h>

#include "lofi/eval/verdict.h"

namespace lofi::demo {
namespace {

HalfScores vision(double baseline_in, double lofi_in) {
  HalfScores s;
  s.half = "vision", s.metric = "top-1 %", s.shift_metric = "avg shift top-1 %", s.higher_is_better = true;
  s.baseline_in = baseline_in, s.lofi_in = lofi_in;
  s.baseline_shift = 20.0, s.lofi_shift = 21.0;
  s.nodes_in = {25.0, 30.0};
  s.baseline_bytes_sent = 1e9, s.lofi_bytes_between_nodes = 0;
  return s;
}

bool holds(const nlohmann::json& claims, const std::string& starts) {
  for (const auto& c : claims)
    if (c["claim"].get<std::string>().rfind(starts, 0) == 0) return c["holds"];
  ADD_FAILURE() << "no claim " << starts;
  return false;
}

TEST(DemoClaims, TopOneHigherIsBetter) {
  EXPECT_TRUE(holds(make_claims(vision(33.0, 32.1)), "the lo-fi average matches"));   // within 1 point
  EXPECT_FALSE(holds(make_claims(vision(33.0, 31.9)), "the lo-fi average matches"));
  EXPECT_TRUE(holds(make_claims(vision(33.0, 32.0)), "the lo-fi average is at least as robust"));
  EXPECT_TRUE(holds(make_claims(vision(33.0, 30.5)), "the lo-fi average beats every node"));
  EXPECT_FALSE(holds(make_claims(vision(33.0, 30.0)), "the lo-fi average beats every node"));  // ties the best
  HalfScores talking = vision(33.0, 33.0);
  talking.lofi_bytes_between_nodes = 4096;
  EXPECT_FALSE(holds(make_claims(talking), "lo-fi sends no bytes"));
  EXPECT_TRUE(holds(make_claims(vision(33.0, 33.0)), "lo-fi sends no bytes"));
}

TEST(DemoClaims, PerplexityLowerIsBetter) {
  HalfScores s;
  s.half = "language", s.metric = "perplexity", s.shift_metric = "avg shift perplexity", s.higher_is_better = false;
  s.baseline_in = 4.834, s.lofi_in = 4.973;  // 2.9% worse
  s.baseline_shift = 140.0, s.lofi_shift = 136.3;
  s.nodes_in = {4.97, 4.95};
  const auto claims = make_claims(s);
  EXPECT_FALSE(holds(claims, "the lo-fi average matches"));
  EXPECT_TRUE(holds(claims, "the lo-fi average is at least as robust"));
  EXPECT_FALSE(holds(claims, "the lo-fi average beats every node"));
  s.lofi_in = 4.92;  // 1.8% worse, and below both nodes
  EXPECT_TRUE(holds(make_claims(s), "the lo-fi average matches"));
  EXPECT_TRUE(holds(make_claims(s), "the lo-fi average beats every node"));
  EXPECT_EQ(eval::verdict_sentence(make_claims(s)[2]),
            "language: the lo-fi average beats every node in-distribution: holds (perplexity: lo-fi 4.92, the best "
            "node 4.95; better than the best node)");
}

}  // namespace
}  // namespace lofi::demo
