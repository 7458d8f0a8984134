// Text from a causal language model, token by token: greedy, or sampled with a temperature,
// top-k and top-p (nucleus), in that order, as Hugging Face's generate() does without a cache (each step re-reads the window of the
// last model.max_seq_len tokens), so users can see what fine-tuning did.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "lofi/model/causal_lm.h"

namespace lofi::eval {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  double temperature = 0;          // 0: greedy (argmax); > 0: sample softmax(logits / temperature)
  int64_t top_k = 0;               // > 0: sample among the K most likely tokens only
  double top_p = 1;                // < 1: sample among the most likely tokens whose probabilities add up to P
  uint64_t seed = 0;               // the sampling generator's seed
  std::vector<int64_t> stop_ids;   // end early after any of these (end-of-text, end-of-turn)
  std::function<void(const std::vector<int64_t>&)> on_token;  // when set: called with all tokens after each new one
};

// transformers' sampling filters on LOGITS (V), already divided by the temperature: the TOP_K most
// likely kept (TopKLogitsWarper; 0: all), then the fewest most likely whose probabilities add up
// to TOP_P (TopPLogitsWarper; 1: all, the most likely always kept); the others set to -inf.
torch::Tensor filter_logits(torch::Tensor logits, int64_t top_k, double top_p);

// PROMPT followed by the new tokens. Throws on an empty prompt or an id outside the vocabulary.
std::vector<int64_t> generate(model::CausalLmImpl& lm, const std::vector<int64_t>& prompt, const GenerateOptions& options);

}  // namespace lofi::eval
