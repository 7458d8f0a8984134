#include "lofi/family/lm_evaluator.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "lofi/data/chat_template.h"
#include "lofi/dist/device.h"
#include "lofi/error.h"
#include "lofi/family/lm_model.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/merge/nonfinite.h"
#include "lofi/model/hf.h"
#include "lofi/model/weights.h"

namespace lofi::family {

std::vector<NamedPath> parse_named_paths(const std::vector<std::string>& args, const std::string& arg_name) {
  std::vector<NamedPath> out;
  for (const auto& arg : args) {
    auto eq = arg.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size()) fail(arg_name, " '", arg, "': expected NAME=PATH");
    const std::string name = arg.substr(0, eq);
    // Results are keyed by name: a repeated one would keep one result of two, silently.
    for (const auto& earlier : out)
      if (earlier.name == name)
        fail(arg_name, " ", name, " is given twice (", earlier.path, " and ", arg.substr(eq + 1), "); give each a name of its own");
    out.push_back({name, arg.substr(eq + 1)});
  }
  return out;
}

LmEvaluator::LmEvaluator(const train::Config& config, const std::vector<NamedPath>& datasets, const EvalSettings& settings,
                         const std::vector<NamedPath>& tasks, const std::string& tokenizer_model)
    : config_(config),
      settings_(settings),
      device_(dist::resolve_device(config.train.device, 0, "train.device")),
      names_(datasets) {
  dist::check_precision(config.train.precision, device_, "train.precision");
  if (settings_.seq_len <= 0) settings_.seq_len = config.data.seq_len;
  if (settings_.seq_len > config.model.max_seq_len)
    fail("--seq-len ", settings_.seq_len, " is longer than the model's ", config.model.max_seq_len, " positions");
  if (datasets.empty() && tasks.empty()) fail("no evaluation data given (--data NAME=PATH, or --task NAME=FILE)");
  if (!tasks.empty()) {
    const std::string dir = find_tokenizer_dir_or_fail(tokenizer_model, settings.tokenizer, "--task", /*bytes_too=*/false);
    tokenizer_ = std::make_unique<data::Tokenizer>(data::Tokenizer::load(dir));
    const std::string model_dir = find_tokenizer_dir(tokenizer_model, "");  // its generation_config.json
    const std::vector<int64_t> stops = data::stop_token_ids(*tokenizer_, model_dir.empty() ? dir : model_dir);
    for (const auto& t : tasks)
      tasks_.emplace_back(eval::read_task(t.name, t.path), *tokenizer_, stops, config.model.max_seq_len,
                          eval::TaskOptions{settings.batch, settings.max_new_tokens, config.model.vocab_size});
  }
  for (const auto& d : datasets) {
    const std::vector<std::string> paths = data::split_paths(d.path);
    for (const auto& p : paths)
      if (std::filesystem::is_directory(p))
        fail("--data ", d.name, "=", p, ": a directory; a language model is scored on token files (`lofi prepare` writes ",
             "them) or chat JSONL; image folders are for image classifiers");
    EvalSet set;
    if (!paths.empty() && data::is_chat_sample_file(paths.front())) {
      set.chat = std::make_unique<data::ChatSamples>(paths, config.model.vocab_size);
      set.rows = std::make_unique<data::PackedChat>(*set.chat, settings_.seq_len, /*packing=*/false, config.data.overlong, d.path,
                                                    "--seq-len");
      // Samples cut to the window are scored on part of their tokens: said, never silently.
      if (set.rows->overlong() > 0 || set.rows->untrained() > 0)
        std::fprintf(stderr, "eval: --data %s: %s; the loss covers the scored tokens only%s\n", d.name.c_str(),
                     set.rows->summary().c_str(),
                     settings_.seq_len < config.model.max_seq_len
                         ? cat(" (--seq-len up to the model's ", config.model.max_seq_len, " positions scores more)").c_str()
                         : "");
    } else {
      set.tokens = std::make_unique<data::TokenShards>(paths, config.model.vocab_size, config.data.format);
      if (set.tokens->size() < settings_.seq_len + 1)
        fail("--data ", d.name, "=", d.path, ": ", set.tokens->size(), " tokens, fewer than one window of ", settings_.seq_len + 1,
             " (--seq-len ", settings_.seq_len, " + 1); give more data or a shorter --seq-len");
    }
    data_.push_back(std::move(set));
  }
  train::ModelConfig shape = config.model;
  shape.init.clear();
  lm_ = make_lm(shape, 0);
  lm_->to(device_);
}

LmScores LmEvaluator::score_model(model::CausalLmImpl& lm) {
  LmScores out;
  dist::PrecisionGuard precision(device_, config_.train.precision);
  for (const auto& d : data_)
    out.data.push_back(eval::in_eval_mode({&lm}, [&] { return score_set(d, eval::model_log_probs(lm)); }));
  for (const auto& t : tasks_)
    out.tasks.push_back(eval::in_eval_mode({&lm}, [&] { return t.score(eval::model_log_probs(lm), device_); }));
  return out;
}

eval::LmScore LmEvaluator::score_set(const EvalSet& set, const eval::LogProbs& log_probs) {
  if (set.rows) return eval::evaluate_chat(*set.rows, settings_.batch, settings_.max_windows, device_, log_probs);
  return eval::evaluate_windows(*set.tokens, settings_.seq_len, settings_.batch, settings_.max_windows, device_, log_probs);
}

LmScores LmEvaluator::score(const io::NamedTensors& weights) {
  model::load_named_tensors(*lm_, weights, "weights", model::tied_copies(*lm_));
  return score_model(*lm_);
}

void refuse_nonfinite_model(const torch::nn::Module& model, const std::string& source, const EvalSettings& settings) {
  if (settings.allow_nonfinite) return;
  merge::refuse_nonfinite_weights(model::module_weights(model), source,
                                  "the weights of a diverged run; leave it out, or pass --allow-nonfinite to use it anyway");
}

// Finite weights can still overflow in the activations: a NaN or Inf loss is refused, naming the
// model and the dataset, unless --allow-nonfinite asked for it, never printed as a result.
static const LmScores& refuse_nonfinite_scores(const LmScores& scores, const std::vector<NamedPath>& names, const std::string& source,
                                        const EvalSettings& settings) {
  if (settings.allow_nonfinite) return scores;
  for (size_t i = 0; i < scores.data.size() && i < names.size(); ++i)
    if (!std::isfinite(scores.data[i].loss))
      fail(source, ": its loss on ", names[i].name, " is ", scores.data[i].loss,
           " although its weights are finite (its activations overflow: weights far too large?); ",
           "pass --allow-nonfinite to report it anyway");
  return scores;
}

LmScores LmEvaluator::score_file(const std::string& checkpoint) {
  if (io::is_lora_adapter(checkpoint)) {  // an adapter (lofi's or PEFT's): on its own base
    train::ModelConfig shape = config_.model;
    shape.init = checkpoint;
    model::CausalLm adapted = make_lm(shape, 0);
    adapted->to(device_);
    refuse_nonfinite_model(*adapted, checkpoint, settings_);
    return refuse_nonfinite_scores(score_model(*adapted), names_, checkpoint, settings_);
  }
  if (model::is_hf_model_dir(checkpoint)) model::load_hf_weights(*lm_, checkpoint);
  else model::load_module_weights(*lm_, io::SafetensorsFile(checkpoint), model::tied_copies(*lm_));
  refuse_nonfinite_model(*lm_, checkpoint, settings_);
  return refuse_nonfinite_scores(score_model(*lm_), names_, checkpoint, settings_);
}

LmScores LmEvaluator::score_ensemble(const std::vector<std::string>& checkpoints) {
  std::vector<model::CausalLm> members;
  for (const auto& path : checkpoints) {
    train::ModelConfig shape = config_.model;
    shape.init = path;
    members.push_back(make_lm(shape, 0));
    refuse_nonfinite_model(*members.back(), path, settings_);
    members.back()->to(device_);
  }
  LmScores out;
  dist::PrecisionGuard precision(device_, config_.train.precision);
  std::vector<model::CausalLmImpl*> models;
  for (auto& m : members) models.push_back(m.get());
  for (const auto& d : data_)
    out.data.push_back(eval::in_eval_mode(models, [&] { return score_set(d, eval::ensemble_log_probs(members)); }));
  for (const auto& t : tasks_)
    out.tasks.push_back(eval::in_eval_mode(models, [&] { return t.score(eval::ensemble_log_probs(members), device_); }));
  return out;
}

std::map<std::string, double> LmEvaluator::losses(const io::NamedTensors& weights) {
  std::map<std::string, double> out;
  const LmScores scores = score(weights);
  for (size_t i = 0; i < scores.size(); ++i) out["loss/" + names_[i].name] = scores[i].loss;
  return out;
}

}  // namespace lofi::family
