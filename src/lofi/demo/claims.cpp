#include "lofi/demo/claims.h"

#include <algorithm>

namespace lofi::demo {

nlohmann::json make_claims(const HalfScores& s) {
  const bool up = s.higher_is_better;
  auto at_least_as_good = [up](double a, double b) { return up ? a >= b : a <= b; };
  nlohmann::json claims = nlohmann::json::array();
  auto add = [&](const std::string& claim, const std::string& metric, double baseline, double lofi,
                 const std::string& against, const std::string& rule, bool holds) {
    claims.push_back({{"half", s.half}, {"claim", claim}, {"metric", metric}, {"baseline", baseline}, {"lofi", lofi},
                      {"against", against}, {"rule", rule}, {"holds", holds}});
  };
  const bool match = up ? s.lofi_in >= s.baseline_in - 1.0 : s.lofi_in <= s.baseline_in * 1.02;
  add("the lo-fi average matches the baseline in-distribution", s.metric, s.baseline_in, s.lofi_in, "the baseline",
      up ? "a match is within 1 point of the baseline" : "a match is within 2% of the baseline", match);
  add("the lo-fi average is at least as robust under shift", s.shift_metric, s.baseline_shift, s.lofi_shift,
      "the baseline", "at least as good as the baseline", at_least_as_good(s.lofi_shift, s.baseline_shift));
  if (!s.nodes_in.empty()) {
    const double best = up ? *std::max_element(s.nodes_in.begin(), s.nodes_in.end())
                           : *std::min_element(s.nodes_in.begin(), s.nodes_in.end());
    add("the lo-fi average beats every node in-distribution", s.metric, best, s.lofi_in, "the best node",
        "better than the best node", up ? s.lofi_in > best : s.lofi_in < best);
  }
  add("lo-fi sends no bytes between nodes", "bytes", s.baseline_bytes_sent, s.lofi_bytes_between_nodes,
      "the baseline (all its workers)", "none between nodes", s.lofi_bytes_between_nodes == 0);
  return claims;
}

}  // namespace lofi::demo
