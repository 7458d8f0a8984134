#pragma once
// The demo's claims, the paper's, checked against what one half of the demo measured: the lo-fi
// average matches the baseline in-distribution, is at least as robust under shift, beats every
// node, and sent nothing between nodes. Each is a results.json entry (eval/verdict.h) that says
// whether it holds; nothing here changes what is measured.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lofi::demo {

struct HalfScores {
  std::string half;               // "language", "vision"
  std::string metric;             // in-distribution metric: "perplexity", "top-1 %"
  std::string shift_metric;       // "avg shift perplexity", "avg shift top-1 %"
  bool higher_is_better = false;
  double baseline_in = 0, lofi_in = 0;        // in-distribution
  double baseline_shift = 0, lofi_shift = 0;  // the shift average
  std::vector<double> nodes_in;               // each lo-fi node, in-distribution
  double baseline_bytes_sent = 0, lofi_bytes_between_nodes = 0;
};

// A match in-distribution: within 1 point of top-1, or within 2% of the baseline's perplexity.
nlohmann::json make_claims(const HalfScores& scores);

}  // namespace lofi::demo
