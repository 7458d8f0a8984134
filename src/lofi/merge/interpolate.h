// The straight line between two checkpoints, (1 - a) A + a B, evaluated at evenly spaced a:
// the linear-mode-connectivity check that tells whether averaging A and B is safe. A barrier
// (the loss rising above the line between the endpoints' losses) means it is not.
#pragma once
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/io/safetensors.h"

namespace lofi::merge {

// Metrics of a set of weights, by name (e.g. {"loss/val": 2.3}).
using Evaluator = std::function<std::map<std::string, double>(const io::NamedTensors&)>;

struct LinePoint {
  double alpha = 0;                       // 0: A, 1: B
  std::map<std::string, double> metrics;
};

std::vector<LinePoint> evaluate_line(const io::NamedTensors& a, const io::NamedTensors& b, int points,
                                     const Evaluator& evaluate);

// max over points of metric(alpha) - ((1 - alpha) metric(0) + alpha metric(1)); 0 when convex.
// Measured for a loss: the height of the bump the average would sit on.
double barrier_height(const std::vector<LinePoint>& line, const std::string& metric);

// {"from", "to", "points": [{"alpha", "metrics"}], "barrier": {metric: height}}: what
// `lofi interpolate --json` writes and `lofi report` plots.
nlohmann::json line_json(const std::string& from, const std::string& to, const std::vector<LinePoint>& line);

}  // namespace lofi::merge
