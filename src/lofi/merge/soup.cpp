#include "lofi/merge/soup.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "lofi/error.h"
#include "lofi/merge/average.h"
#include "lofi/merge/nonfinite.h"

namespace lofi::merge {

SoupResult greedy_soup(const std::vector<std::string>& candidates, const Scorer& score, bool allow_nonfinite,
                       const WeightsLoader& load) {
  if (candidates.empty()) fail("soup: no candidates");
  std::vector<io::NamedTensors> models;
  std::vector<double> alone;
  for (const auto& path : candidates) {
    models.push_back(load ? load(path) : io::SafetensorsFile(path).load_all());
    if (!allow_nonfinite) refuse_nonfinite(models.back(), path, "--allow-nonfinite");
    alone.push_back(score(models.back()));
  }
  std::vector<size_t> order(candidates.size());
  std::iota(order.begin(), order.end(), 0);
  // Non-finite scores (a diverged candidate) rank last, and never join the soup.
  auto key = [&](size_t i) { return std::isfinite(alone[i]) ? alone[i] : std::numeric_limits<double>::infinity(); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  if (!std::isfinite(alone[order[0]])) fail("soup: no candidate has a finite held-out score");

  SoupResult result;
  std::vector<const io::NamedTensors*> soup{&models[order[0]]};
  result.weights = models[order[0]];
  result.score = alone[order[0]];
  result.chosen.push_back(candidates[order[0]]);
  result.steps.push_back({candidates[order[0]], alone[order[0]], alone[order[0]], true});
  for (size_t r = 1; r < order.size(); ++r) {
    size_t i = order[r];
    soup.push_back(&models[i]);
    io::NamedTensors trial = weighted_average(soup, std::vector<double>(soup.size(), 1.0));
    double s = score(trial);
    bool keep = std::isfinite(alone[i]) && s < result.score;
    result.steps.push_back({candidates[i], alone[i], s, keep});
    if (keep) {
      result.score = s;
      result.weights = std::move(trial);
      result.chosen.push_back(candidates[i]);
    } else {
      soup.pop_back();
    }
  }
  return result;
}

}  // namespace lofi::merge
