#include "lofi/eval/scorer.h"

#include <algorithm>
#include <memory>

#include "lofi/error.h"

namespace lofi::eval {

std::vector<ImageTestSet> image_test_sets(const ScorerInputs& inputs) {
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
  if (config.model.arch == "vit") {
    auto evaluator = std::make_shared<ImageEvaluator>(config, checkpoint_classes(reference), image_test_sets(inputs),
                                                      inputs.images);
    return [evaluator](const io::NamedTensors& w) { return evaluator->losses(w); };
  }
  if (!inputs.class_maps.empty()) fail("--class-map applies to image classifiers; this is a language model");
  auto evaluator = std::make_shared<LmEvaluator>(config, inputs.data, inputs.lm);
  return [evaluator](const io::NamedTensors& w) { return evaluator->losses(w); };
}

}  // namespace lofi::eval
