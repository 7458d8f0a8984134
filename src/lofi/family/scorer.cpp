#include "lofi/family/scorer.h"

#include <algorithm>

#include "lofi/error.h"
#include "lofi/family/family.h"

namespace lofi::family {

void refuse_other_kinds_flags(const ScorerInputs& inputs, const std::string& model, bool classifier) {
  const EvalSettings lm_defaults;
  const std::vector<std::pair<bool, const char*>> lm_flags = {
      {inputs.lm.seq_len != lm_defaults.seq_len, "--seq-len"},
      {inputs.lm.max_windows != lm_defaults.max_windows, "--max-windows"},
      {!inputs.tasks.empty(), "--task"},
      {inputs.lm.tokenizer != lm_defaults.tokenizer, "--tokenizer"},
      {inputs.lm.max_new_tokens != lm_defaults.max_new_tokens, "--max-new-tokens"}};
  const std::vector<std::pair<bool, const char*>> image_flags = {{inputs.images.max_images != ImageEvalSettings{}.max_images, "--max-images"},
                                                                 {!inputs.class_maps.empty(), "--class-map"}};
  for (const auto& [given, flag] : classifier ? lm_flags : image_flags) {
    if (!given) continue;
    // A flag that bounds the scoring has its counterpart.
    const std::string bound = std::string(flag) == "--max-windows" || std::string(flag) == "--max-images"
                                  ? cat(" (", classifier ? "--max-images" : "--max-windows", " bounds its sets)")
                                  : "";
    fail(flag, " applies to ", classifier ? "language models" : "image classifiers", "; ", model, " is ",
         classifier ? "an image classifier" : "a language model", bound);
  }
}

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
  return family_of(config.model.arch).make_scorer(config, reference, inputs);
}

}  // namespace lofi::family
