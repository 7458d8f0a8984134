// Vision transformers (timm / DeiT layout): image classification on image folders, scored by
// top-1, top-5 and loss per test set.
#include "lofi/family/family.h"
#include "lofi/family/image_evaluator.h"
#include "lofi/family/image_task.h"
#include "lofi/eval/table.h"

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
    refuse_other_kinds_flags(inputs, reference, /*classifier=*/true);
    auto evaluator = std::make_shared<ImageEvaluator>(config, checkpoint_classes(reference), image_test_sets(inputs),
                                                      inputs.images);
    return [evaluator](const io::NamedTensors& w) { return evaluator->losses(w); };
  }
  std::unique_ptr<TableScorer> make_table_scorer(const train::Config& config, const std::string& reference,
                                                 const ScorerInputs& inputs) const override {
    refuse_other_kinds_flags(inputs, reference, /*classifier=*/true);
    auto evaluator = std::make_shared<ImageEvaluator>(config, checkpoint_classes(reference), image_test_sets(inputs),
                                                      inputs.images);
    std::vector<std::string> columns;
    for (const auto& s : evaluator->sets()) columns.insert(columns.end(), {s.name + " top-1", s.name + " top-5", s.name + " loss"});
    auto format = [sets = evaluator->sets()](const std::vector<eval::ClassificationScore>& scores) {
      ScoreRow row;
      for (size_t i = 0; i < scores.size(); ++i) {
        row.cells.push_back(eval::format_fixed(100 * scores[i].top1, 2));
        row.cells.push_back(eval::format_fixed(100 * scores[i].top5, 2));
        row.cells.push_back(eval::format_fixed(scores[i].loss, 4));
        row.datasets[sets[i].name] = {{"path", sets[i].folder}, {"images", scores[i].count}, {"top1", scores[i].top1},
                                      {"top5", scores[i].top5}, {"loss", scores[i].loss}};
      }
      return row;
    };
    return std::make_unique<EvaluatorTable<ImageEvaluator, std::vector<eval::ClassificationScore>>>(evaluator, columns, format);
  }
};

}  // namespace
}  // namespace lofi::family

LOFI_MODEL_FAMILY(vit, lofi::family::VitFamily)
