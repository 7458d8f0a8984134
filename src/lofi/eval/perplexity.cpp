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
    nll_sum -= log_probs.of_targets(x, y).sum().item<double>();                          // (B, T) -> scalar
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
    const torch::Tensor targets = dist::to_device(b.targets, device), keep = targets != -100;  // (B, T)
    const torch::Tensor picked = log_probs.of_targets(dist::to_device(b.tokens, device), targets);  // (B, T)
    nll_sum -= picked.masked_select(keep).sum().item<double>();
    kept += b.targets_kept;
  }
  LmScore score;
  score.tokens = kept;
  score.loss = kept > 0 ? nll_sum / static_cast<double>(kept) : 0.0;
  score.perplexity = std::exp(score.loss);
  return score;
}

namespace {

// The log-probabilities (n, V) fp32 that MODELS give after final hidden states H (one (n, E) each):
// one model's, or the log of the members' mean probability.
torch::Tensor mixed_log_probs(const std::vector<model::CausalLmImpl*>& models, const std::vector<torch::Tensor>& h) {
  if (models.size() == 1) return torch::log_softmax(models[0]->head(h[0]).to(torch::kFloat32), -1);
  std::vector<torch::Tensor> lps;
  for (size_t i = 0; i < models.size(); ++i) lps.push_back(torch::log_softmax(models[i]->head(h[i]).to(torch::kFloat32), -1));
  // log mean_i p_i = logsumexp_i log p_i - log M, stacked on a new leading axis: (M, n, V)
  return torch::logsumexp(torch::stack(lps), 0) - std::log(static_cast<double>(models.size()));
}

LogProbs log_probs_of(const std::vector<model::CausalLmImpl*>& models, int64_t chunk_tokens) {
  LogProbs lp;
  lp.of_targets = [models, chunk_tokens](const torch::Tensor& x, const torch::Tensor& targets) {
    std::vector<torch::Tensor> h;
    for (auto* m : models) {
      const torch::Tensor hidden = m->hidden(x);
      h.push_back(hidden.reshape({-1, hidden.size(-1)}));  // (B, T, E) -> (B*T, E)
    }
    const int64_t N = h[0].size(0), V = models[0]->head_weight().size(0);
    constexpr int64_t kNumbersPerChunk = int64_t{64} << 20;
    const int64_t step =
        chunk_tokens > 0 ? chunk_tokens : std::max<int64_t>(1, kNumbersPerChunk / (V * static_cast<int64_t>(models.size())));
    const torch::Tensor t = targets.reshape({-1}).clamp_min(0);  // (B*T)
    torch::Tensor out = torch::empty({N}, h[0].options().dtype(torch::kFloat32));
    for (int64_t first = 0; first < N; first += step) {
      const int64_t n = std::min(step, N - first);
      std::vector<torch::Tensor> rows;
      for (const auto& hm : h) rows.push_back(hm.narrow(0, first, n));  // (n, E)
      const torch::Tensor chunk = mixed_log_probs(models, rows);         // (n, V)
      out.narrow(0, first, n).copy_(chunk.gather(1, t.narrow(0, first, n).unsqueeze(1)).squeeze(1));
    }
    return out.view(targets.sizes());  // (B, T)
  };
  lp.of_next = [models](const torch::Tensor& x) {
    std::vector<torch::Tensor> last;
    for (auto* m : models) last.push_back(m->hidden(x).select(1, -1));  // (B, T, E) -> (B, E)
    return mixed_log_probs(models, last);                                // (B, V)
  };
  return lp;
}

}  // namespace

LogProbs model_log_probs(model::CausalLmImpl& lm, int64_t chunk_tokens) { return log_probs_of({&lm}, chunk_tokens); }

LogProbs ensemble_log_probs(std::vector<model::CausalLm>& members, int64_t chunk_tokens) {
  if (members.empty()) fail("ensemble: no members");
  std::vector<model::CausalLmImpl*> models;
  for (auto& m : members) models.push_back(m.get());
  return log_probs_of(models, chunk_tokens);
}

LmScore evaluate_lm(model::CausalLmImpl& lm, const data::TokenShards& tokens, int64_t seq_len, int64_t batch,
                    int64_t max_windows) {
  return in_eval_mode({&lm}, [&] {
    return evaluate_windows(tokens, seq_len, batch, max_windows, dist::module_device(lm), model_log_probs(lm));
  });
}

}  // namespace lofi::eval
