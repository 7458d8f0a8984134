#include "lofi/family/scorer.h"

#include <algorithm>

#include "lofi/error.h"
#include "lofi/family/family.h"

namespace lofi::family {

std::vector<ImageTestSet> image_test_sets(const ScorerInputs& inputs) {
  if (!inputs.tasks.empty()) fail("--task scores language models; an image classifier is scored on --data image folders");
  std::vector<ImageTestSet> sets;
  for (const auto& d : inputs.data) sets.push_back({d.name, d.path, ""});
  for (const auto& m : inputs.class_maps) {
    auto it = std::find_if(sets.begin(), sets.end(), [&](const ImageTestSet& s) { return s.name == m.name; });
    if (it == sets.end()) fail("--class-map ", m.name, "=", m.path, ": no --data set is named ", m.name);
    it->class_map = m.path;
  }
  return sets;
}

WeightsScorer make_weights_scorer(const train::Config& config, const std::string& reference, const ScorerInputs& inputs) {
  return family_of(config.model.arch).make_scorer(config, reference, inputs);
}

}  // namespace lofi::family
