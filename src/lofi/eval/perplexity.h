// Language-model evaluation: mean next-token loss and perplexity over consecutive,
// non-overlapping windows of a token stream, for one model or an output-space ensemble.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "lofi/data/token_shards.h"
#include "lofi/model/causal_lm.h"

namespace lofi::eval {

struct LmScore {
  double loss = 0;        // mean cross-entropy, nats per token
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;     // tokens scored
};

// Scores up to MAX_WINDOWS windows of SEQ_LEN (0: all) in batches of BATCH.
LmScore evaluate_lm(model::CausalLmImpl& lm, const data::TokenShards& tokens, int64_t seq_len, int64_t batch,
                    int64_t max_windows = 0);

// The ensemble's prediction is the mean of the members' probabilities.
LmScore evaluate_lm_ensemble(std::vector<model::CausalLm>& members, const data::TokenShards& tokens, int64_t seq_len,
                             int64_t batch, int64_t max_windows = 0);

}  // namespace lofi::eval
