// Language-model evaluation: mean next-token loss and perplexity over consecutive,
// non-overlapping windows of a token stream, for one model or an output-space ensemble.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "lofi/data/packed_chat.h"
#include "lofi/data/token_shards.h"
#include "lofi/model/causal_lm.h"

namespace lofi::eval {

struct LmScore {
  double loss = 0;        // mean cross-entropy, nats per token
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;     // tokens scored
};

// What every score here reads, of one model or of an ensemble (the log of the members' mean
// probability), fp32. The (B, T, V) log-probabilities are never whole: they are made over chunks
// of tokens (about 64M numbers each), as the training loss is (at Llama 3's 128,256 words a batch
// of 8 x 2048 tokens would otherwise take 8 GB for each copy).
struct LogProbs {
  // inputs (B, T), targets (B, T) -> (B, T): log p(target) after the inputs up to there; a negative
  // target (an ignored one) reads as token 0, for the caller to leave out.
  std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> of_targets;
  // inputs (B, T) -> (B, V): the log-probabilities of the token after each row's last.
  std::function<torch::Tensor(const torch::Tensor&)> of_next;
};
// CHUNK_TOKENS: tokens per chunk (0: about 64M numbers' worth).
LogProbs model_log_probs(model::CausalLmImpl& lm, int64_t chunk_tokens = 0);
LogProbs ensemble_log_probs(std::vector<model::CausalLm>& members, int64_t chunk_tokens = 0);

// Runs F with every model in eval mode (and no gradients), restoring their modes after.
template <typename F>
auto in_eval_mode(const std::vector<model::CausalLmImpl*>& models, F f) {
  torch::NoGradGuard no_grad;
  std::vector<bool> was_training;
  for (auto* m : models) was_training.push_back(m->is_training()), m->eval();
  struct Restore {
    const std::vector<model::CausalLmImpl*>& models;
    const std::vector<bool>& was;
    ~Restore() {
      for (size_t i = 0; i < models.size(); ++i) models[i]->train(was[i]);
    }
  } restore{models, was_training};
  return f();
}

// Mean loss over the trained tokens of chat samples laid out one per row (data::PackedChat without
// packing: no row needs a mask), up to MAX_ROWS rows (0: all) in batches of BATCH.
LmScore evaluate_chat(const data::PackedChat& rows, int64_t batch, int64_t max_rows, const torch::Device& device,
                      const LogProbs& log_probs);

// Scores up to MAX_WINDOWS windows of SEQ_LEN (0: all) in batches of BATCH, by LOG_PROBS (a model's
// or an ensemble's; the caller puts the models in eval mode).
LmScore evaluate_windows(const data::TokenShards& tokens, int64_t seq_len, int64_t batch, int64_t max_windows,
                         const torch::Device& device, const LogProbs& log_probs);

// Scores up to MAX_WINDOWS windows of SEQ_LEN (0: all) in batches of BATCH.
LmScore evaluate_lm(model::CausalLmImpl& lm, const data::TokenShards& tokens, int64_t seq_len, int64_t batch,
                    int64_t max_windows = 0);

}  // namespace lofi::eval
