// Vision transformers (timm / DeiT layout): image classification on image folders, scored by
// top-1, top-5 and loss per test set.
#include "lofi/family/family.h"
#include "lofi/family/image_evaluator.h"
#include "lofi/family/image_task.h"

namespace lofi::family {
namespace {

class VitFamily : public Family {
 public:
  std::string name() const override { return "vit"; }
  std::vector<std::string> archs() const override { return {"vit"}; }
  Kind kind() const override { return Kind::image_classifier; }
  std::unique_ptr<train::Task> make_task(const train::Config& config, const dist::Topology& topo,
                                         uint64_t init_seed) const override {
    return std::make_unique<ImageTask>(config, topo, init_seed);
  }
  WeightsScorer make_scorer(const train::Config& config, const std::string& reference,
                            const ScorerInputs& inputs) const override {
    auto evaluator = std::make_shared<ImageEvaluator>(config, checkpoint_classes(reference), image_test_sets(inputs),
                                                      inputs.images);
    return [evaluator](const io::NamedTensors& w) { return evaluator->losses(w); };
  }
};

}  // namespace
}  // namespace lofi::family

LOFI_MODEL_FAMILY(vit, lofi::family::VitFamily)
