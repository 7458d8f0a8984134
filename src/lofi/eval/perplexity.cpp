#include "lofi/eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "lofi/dist/device.h"
#include "lofi/error.h"
#include "lofi/eval/progress.h"

namespace lofi::eval {
LmScore evaluate_windows(const data::TokenShards& tokens, int64_t seq_len, int64_t batch, int64_t max_windows,
                      const torch::Device& device, const LogProbs& log_probs) {
  int64_t windows = (tokens.size() - 1) / seq_len;
  if (windows < 1) fail("evaluation data has ", tokens.size(), " tokens, fewer than one window of ", seq_len + 1);
  if (max_windows > 0) windows = std::min(windows, max_windows);
  torch::NoGradGuard no_grad;
  double nll_sum = 0;
  Progress progress("scoring", windows, "windows");
  for (int64_t first = 0; first < windows; first += batch) {
    progress.update(first);
    int64_t n = std::min(batch, windows - first);
    torch::Tensor window = torch::empty({n, seq_len + 1}, torch::kLong);  // (B, T + 1)
    for (int64_t i = 0; i < n; ++i) tokens.copy((first + i) * seq_len, seq_len + 1, window[i].data_ptr<int64_t>());
    window = dist::to_device(window, device);
    torch::Tensor x = window.narrow(1, 0, seq_len), y = window.narrow(1, 1, seq_len);  // (B, T)
    torch::Tensor lp = log_probs(x);                                                     // (B, T, V)
    nll_sum -= lp.gather(2, y.unsqueeze(2)).sum().item<double>();                       // (B, T, 1) -> scalar
  }
  LmScore score;
  score.tokens = windows * seq_len;
  score.loss = nll_sum / static_cast<double>(score.tokens);
  score.perplexity = std::exp(score.loss);
  return score;
}

LmScore evaluate_chat(const data::PackedChat& rows, int64_t batch, int64_t max_rows, const torch::Device& device,
                      const LogProbs& log_probs) {
  if (rows.packed()) fail("evaluate_chat: rows must hold one sample each");
  const int64_t n = max_rows > 0 ? std::min(max_rows, rows.rows()) : rows.rows();
  torch::NoGradGuard no_grad;
  double nll_sum = 0;
  int64_t kept = 0;
  Progress progress("scoring", n, "samples");
  for (int64_t first = 0; first < n; first += batch) {
    progress.update(first);
    std::vector<int64_t> chunk;
    for (int64_t r = first; r < std::min(n, first + batch); ++r) chunk.push_back(r);
    const data::ChatBatch b = rows.batch(chunk);
    const torch::Tensor lp = log_probs(dist::to_device(b.tokens, device));                 // (B, T, V)
    const torch::Tensor targets = dist::to_device(b.targets, device), keep = targets != -100;  // (B, T)
    const torch::Tensor picked = lp.gather(2, targets.clamp_min(0).unsqueeze(2)).squeeze(2);   // (B, T)
    nll_sum -= picked.masked_select(keep).sum().item<double>();
    kept += b.targets_kept;
  }
  LmScore score;
  score.tokens = kept;
  score.loss = kept > 0 ? nll_sum / static_cast<double>(kept) : 0.0;
  score.perplexity = std::exp(score.loss);
  return score;
}

LogProbs model_log_probs(model::CausalLmImpl& lm) {
  return [&lm](const torch::Tensor& x) { return torch::log_softmax(lm.forward(x).to(torch::kFloat32), -1); };
}

LogProbs ensemble_log_probs(std::vector<model::CausalLm>& members) {
  if (members.empty()) fail("ensemble: no members");
  return [&members](const torch::Tensor& x) {
    std::vector<torch::Tensor> lps;
    for (auto& m : members) lps.push_back(torch::log_softmax(m->forward(x).to(torch::kFloat32), -1));
    // log mean_i p_i = logsumexp_i log p_i - log M, stacked on a new leading axis: (M, B, T, V)
    return torch::logsumexp(torch::stack(lps), 0) - std::log(static_cast<double>(members.size()));
  };
}

LmScore evaluate_lm(model::CausalLmImpl& lm, const data::TokenShards& tokens, int64_t seq_len, int64_t batch,
                    int64_t max_windows) {
  return in_eval_mode({&lm}, [&] {
    return evaluate_windows(tokens, seq_len, batch, max_windows, dist::module_device(lm), model_log_probs(lm));
  });
}

}  // namespace lofi::eval
