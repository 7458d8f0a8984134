#include "lofi/merge/interpolate.h"

#include <algorithm>

#include "lofi/error.h"
#include "lofi/merge/average.h"

namespace lofi::merge {

std::vector<LinePoint> evaluate_line(const io::NamedTensors& a, const io::NamedTensors& b, int points,
                                     const Evaluator& evaluate) {
  if (points < 2) fail("interpolate: --points must be >= 2, found ", points);
  std::vector<LinePoint> line;
  for (int p = 0; p < points; ++p) {
    double alpha = static_cast<double>(p) / static_cast<double>(points - 1);
    // The endpoints are the checkpoints themselves, not a recomputation that could round.
    io::NamedTensors mix = p == 0 ? a : p == points - 1 ? b : weighted_average({&a, &b}, {1.0 - alpha, alpha});
    line.push_back({alpha, evaluate(mix)});
  }
  return line;
}

double barrier_height(const std::vector<LinePoint>& line, const std::string& metric) {
  if (line.size() < 2) return 0;
  double start = line.front().metrics.at(metric), end = line.back().metrics.at(metric), height = 0;
  for (const auto& p : line) height = std::max(height, p.metrics.at(metric) - ((1 - p.alpha) * start + p.alpha * end));
  return height;
}

nlohmann::json line_json(const std::string& from, const std::string& to, const std::vector<LinePoint>& line) {
  nlohmann::json points = nlohmann::json::array(), barrier = nlohmann::json::object();
  for (const auto& p : line) points.push_back({{"alpha", p.alpha}, {"metrics", p.metrics}});
  if (!line.empty())
    for (const auto& [metric, value] : line.front().metrics) barrier[metric] = barrier_height(line, metric);
  return {{"from", from}, {"to", to}, {"points", points}, {"barrier", barrier}};
}

}  // namespace lofi::merge
