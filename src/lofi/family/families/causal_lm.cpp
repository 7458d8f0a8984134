// Decoder-only language models (every architecture of model/archs/: OPT, GPT-2, Llama, Qwen2,
// Mistral): next-token prediction on token shards, scored by loss and perplexity per dataset.
#include "lofi/data/chat_samples.h"
#include "lofi/data/token_shards.h"
#include "lofi/error.h"
#include "lofi/eval/table.h"
#include "lofi/family/lm_footprint.h"
#include "lofi/family/chat_task.h"
#include "lofi/family/family.h"
#include "lofi/family/lm_evaluator.h"
#include "lofi/family/lm_model.h"
#include "lofi/family/lm_task.h"
#include "lofi/model/arch.h"
#include "lofi/model/hf.h"
#include "lofi/model/weights.h"

namespace lofi::family {
namespace {

class CausalLmFamily : public Family {
 public:
  std::string name() const override { return "causal-lm"; }
  std::vector<std::string> archs() const override { return model::lm_arch_names(); }
  Kind kind() const override { return Kind::language_model; }
  std::unique_ptr<train::Task> make_task(const train::Config& config, const dist::Topology& topo,
                                         uint64_t init_seed) const override {
    const std::vector<std::string> train = data::split_paths(config.data.train);
    if (!train.empty() && data::is_chat_sample_file(train.front())) return std::make_unique<ChatTask>(config, topo, init_seed);
    return std::make_unique<LmTask>(config, topo, init_seed);
  }
  std::optional<train::ModelFootprint> footprint(const train::Config& config, int64_t micro_batch) const override {
    return lm_footprint(config, micro_batch);
  }
  WeightsScorer make_scorer(const train::Config& config, const std::string& reference, const ScorerInputs& inputs) const override {
    refuse_other_kinds_flags(inputs, reference, /*classifier=*/false);
    if (!inputs.tasks.empty()) fail("--task is scored by `lofi eval`; soups and interpolations are judged by held-out loss (--data)");
    auto evaluator = std::make_shared<LmEvaluator>(config, inputs.data, inputs.lm);
    return [evaluator](const io::NamedTensors& w) { return evaluator->losses(w); };
  }
  std::unique_ptr<TableScorer> make_table_scorer(const train::Config& config, const std::string& reference,
                                                 const ScorerInputs& inputs) const override {
    refuse_other_kinds_flags(inputs, reference, /*classifier=*/false);
    auto evaluator = std::make_shared<LmEvaluator>(config, inputs.data, inputs.lm, inputs.tasks, reference);
    std::vector<std::string> columns;
    for (const auto& d : inputs.data) columns.push_back(d.name + " loss"), columns.push_back(d.name + " ppl");
    for (const auto& t : evaluator->tasks()) {
      if (t.task().multiple_choice) columns.push_back(t.task().name + " acc"), columns.push_back(t.task().name + " acc_norm");
      else columns.push_back(t.task().name + " exact_match");
    }
    auto format = [datasets = inputs.data](const LmScores& scores) {
      ScoreRow row;
      for (size_t i = 0; i < scores.size(); ++i) {
        row.cells.push_back(eval::format_fixed(scores[i].loss, 4));
        row.cells.push_back(eval::format_fixed(scores[i].perplexity, 3));
        row.datasets[datasets[i].name] = {{"path", datasets[i].path}, {"tokens", scores[i].tokens},
                                          {"loss", scores[i].loss}, {"perplexity", scores[i].perplexity}};
      }
      auto with_error = [](double value, double stderr_) { return eval::format_fixed(value, 4) + " ± " + eval::format_fixed(stderr_, 4); };
      for (const auto& t : scores.tasks) {
        if (t.multiple_choice) row.cells.push_back(with_error(t.acc, t.acc_stderr)), row.cells.push_back(with_error(t.acc_norm, t.acc_norm_stderr));
        else row.cells.push_back(with_error(t.exact_match, t.exact_match_stderr));
        row.datasets[t.name] = t.to_json();
      }
      return row;
    };
    return std::make_unique<EvaluatorTable<LmEvaluator, LmScores>>(evaluator, columns, format);
  }
  io::NamedTensors load_weights(const train::Config& config, const std::string& path) const override {
    if (!model::is_hf_model_dir(path)) return Family::load_weights(config, path);
    train::ModelConfig shape = config.model;  // the directory's config.json gives the shape
    shape.init = path;
    return model::module_weights(*make_lm(shape, 0));
  }
};

}  // namespace
}  // namespace lofi::family

LOFI_MODEL_FAMILY(causal_lm, lofi::family::CausalLmFamily)
