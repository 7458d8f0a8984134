#include "lofi/eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "lofi/error.h"

namespace lofi::eval {

LmScore evaluate_lm(model::Gpt& gpt, const data::TokenShards& tokens, int64_t seq_len, int64_t batch,
                    int64_t max_windows) {
  int64_t windows = (tokens.size() - 1) / seq_len;
  if (windows < 1) fail("evaluation data has ", tokens.size(), " tokens, fewer than one window of ", seq_len + 1);
  if (max_windows > 0) windows = std::min(windows, max_windows);
  torch::NoGradGuard no_grad;
  bool was_training = gpt->is_training();
  gpt->eval();
  double loss_sum = 0;
  for (int64_t first = 0; first < windows; first += batch) {
    int64_t n = std::min(batch, windows - first);
    torch::Tensor window = torch::empty({n, seq_len + 1}, torch::kLong);  // (B, T + 1)
    for (int64_t i = 0; i < n; ++i)
      tokens.copy((first + i) * seq_len, seq_len + 1, window[i].data_ptr<int64_t>());
    torch::Tensor x = window.narrow(1, 0, seq_len), y = window.narrow(1, 1, seq_len);
    loss_sum += gpt->loss(x, y).item<double>() * static_cast<double>(n);
  }
  gpt->train(was_training);
  LmScore score;
  score.loss = loss_sum / static_cast<double>(windows);
  score.perplexity = std::exp(score.loss);
  score.tokens = windows * seq_len;
  return score;
}

}  // namespace lofi::eval
