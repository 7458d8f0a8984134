// Held-out metrics of a weight set, whichever kind of model a checkpoint holds: the scorer that
// `soup` and `interpolate` sweep with. Language models give "loss/NAME" on token shards;
// classifiers give "loss/NAME" and "top1/NAME" on image folders (through optional class maps).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/family/image_evaluator.h"
#include "lofi/family/lm_evaluator.h"

namespace lofi::family {

using WeightsScorer = std::function<std::map<std::string, double>(const io::NamedTensors&)>;

struct ScorerInputs {
  std::vector<NamedPath> data;        // NAME=PATH: token shards, or image folders for classifiers
  std::vector<NamedPath> class_maps;  // NAME=FILE: a class map for image set NAME (classifiers only)
  std::vector<NamedPath> tasks;       // NAME=FILE: accuracy tasks (language models only; eval/task_accuracy.h)
  EvalSettings lm;
  ImageEvalSettings images;
};

// One row of `lofi eval`'s table: the cells after the model's name, and the JSON record of its
// scores per dataset ({"NAME": {"path": ..., "loss": ...}}).
struct ScoreRow {
  std::vector<std::string> cells;
  nlohmann::json datasets;
};

// What `lofi eval` shows of a model, whichever family scores it: the family names the columns
// and formats its scores (perplexity for language models, top-1/top-5 for classifiers).
class TableScorer {
 public:
  virtual ~TableScorer() = default;
  virtual std::vector<std::string> columns() const = 0;  // after "model", e.g. "general loss", "general ppl"
  virtual ScoreRow score_file(const std::string& path) = 0;
  // The members' output-space ensemble (the mean of their probabilities).
  virtual ScoreRow score_ensemble(const std::vector<std::string>& paths) = 0;
  virtual ScoreRow score(const io::NamedTensors& weights) = 0;
};

// A TableScorer over an evaluator (LmEvaluator, ImageEvaluator) and a family's FORMAT of its scores.
// SCORES: what the evaluator's score functions return.
template <typename Evaluator, typename Scores>
class EvaluatorTable : public TableScorer {
 public:
  using Format = std::function<ScoreRow(const Scores&)>;
  EvaluatorTable(std::shared_ptr<Evaluator> evaluator, std::vector<std::string> columns, Format format)
      : evaluator_(std::move(evaluator)), columns_(std::move(columns)), format_(std::move(format)) {}
  std::vector<std::string> columns() const override { return columns_; }
  ScoreRow score_file(const std::string& path) override { return format_(evaluator_->score_file(path)); }
  ScoreRow score_ensemble(const std::vector<std::string>& paths) override {
    return format_(evaluator_->score_ensemble(paths));
  }
  ScoreRow score(const io::NamedTensors& weights) override { return format_(evaluator_->score(weights)); }

 private:
  std::shared_ptr<Evaluator> evaluator_;
  std::vector<std::string> columns_;
  Format format_;
};

// Refuses, naming the flag, what INPUTS asks of the other kind of model than MODEL's (CLASSIFIER:
// an image classifier, else a language model): --max-images and --class-map are a classifier's;
// --seq-len, --max-windows, --task, --tokenizer and --max-new-tokens a language model's.
void refuse_other_kinds_flags(const ScorerInputs& inputs, const std::string& model, bool classifier);

// The test sets of INPUTS for a classifier, each with its class map; fails on a map naming no set.
std::vector<ImageTestSet> image_test_sets(const ScorerInputs& inputs);

// A scorer for models shaped as CONFIG, by its model family (family/family.h); REFERENCE is a
// checkpoint of that model (a classifier's class names come from it).
WeightsScorer make_weights_scorer(const train::Config& config, const std::string& reference, const ScorerInputs& inputs);

}  // namespace lofi::family
