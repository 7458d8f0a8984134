// Evaluates language-model weights on named token datasets: the scorer behind `eval`,
// `soup` and `interpolate`. Holds one model of the checkpoint's shape and reloads its weights
// for each evaluation, so sweeping many weight sets allocates nothing new.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lofi/data/chat_samples.h"
#include "lofi/data/packed_chat.h"
#include "lofi/data/token_shards.h"
#include "lofi/data/tokenizer.h"
#include "lofi/eval/perplexity.h"
#include "lofi/eval/task_accuracy.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/causal_lm.h"
#include "lofi/train/config.h"

namespace lofi::family {

struct NamedPath {
  std::string name, path;
};
// "NAME=PATH" arguments; ARG_NAME (e.g. "--data") names the flag in errors.
std::vector<NamedPath> parse_named_paths(const std::vector<std::string>& args, const std::string& arg_name);

struct EvalSettings {
  int64_t seq_len = 0;      // 0: the config's data.seq_len
  int64_t batch = 16;       // windows per forward pass
  int64_t max_windows = 0;  // per dataset; 0: all
  bool allow_nonfinite = false;  // score weights holding NaN or Inf (else refused, naming the tensor)
  std::string tokenizer;         // tasks: the tokenizer directory (else found from the model: find_tokenizer_dir)
  int64_t max_new_tokens = 32;   // tasks: a short answer's longest generation
};

// A model's scores: loss and perplexity per dataset (indexing gives these), accuracy per task.
struct LmScores {
  std::vector<eval::LmScore> data;
  std::vector<eval::TaskScore> tasks;
  const eval::LmScore& operator[](size_t i) const { return data.at(i); }
  size_t size() const { return data.size(); }
};

// Refuses a model whose weights hold NaN or Inf (scoring it would print NaN as if it were a
// result), naming SOURCE and the tensor, unless SETTINGS allow it.
void refuse_nonfinite_model(const torch::nn::Module& model, const std::string& source, const EvalSettings& settings);

class LmEvaluator {
 public:
  // CONFIG gives the model's shape (e.g. from train::config_from_checkpoint). TASKS: NAME=FILE task
  // files (eval/task_accuracy.h), read with SETTINGS.tokenizer; TOKENIZER_MODEL: the model whose
  // tokenizer (and generation_config.json) serves when SETTINGS.tokenizer is empty.
  LmEvaluator(const train::Config& config, const std::vector<NamedPath>& datasets, const EvalSettings& settings,
              const std::vector<NamedPath>& tasks = {}, const std::string& tokenizer_model = "");
  const std::vector<eval::TaskScorer>& tasks() const { return tasks_; }

  const std::vector<NamedPath>& datasets() const { return names_; }
  // Scores per dataset, in dataset order, of the given weights / of a checkpoint / of an
  // output-space ensemble of checkpoints.
  LmScores score(const io::NamedTensors& weights);
  LmScores score_file(const std::string& checkpoint);
  LmScores score_ensemble(const std::vector<std::string>& checkpoints);
  // {"loss/NAME": loss} for merge::Evaluator.
  std::map<std::string, double> losses(const io::NamedTensors& weights);

 private:
  LmScores score_model(model::CausalLmImpl& lm);

  train::Config config_;
  EvalSettings settings_;
  torch::Device device_;  // config.train.device, for the models (the windows follow them)
  std::vector<NamedPath> names_;
  // A dataset: token shards, or chat samples (lofi prepare --chat) scored on their trained tokens.
  struct EvalSet {
    std::unique_ptr<data::TokenShards> tokens;
    std::unique_ptr<data::ChatSamples> chat;
    std::unique_ptr<data::PackedChat> rows;
  };
  eval::LmScore score_set(const EvalSet& set, const eval::LogProbs& log_probs);
  std::vector<EvalSet> data_;
  model::CausalLm lm_;
  std::unique_ptr<data::Tokenizer> tokenizer_;  // tasks only; the scorers refer to it
  std::vector<eval::TaskScorer> tasks_;
};

}  // namespace lofi::family
