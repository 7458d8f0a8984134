#include "lofi/eval/generate.h"

#include <algorithm>
#include <cstdio>

#include "lofi/error.h"

namespace lofi::eval {

torch::Tensor filter_logits(torch::Tensor logits, int64_t top_k, double top_p) {
  if (top_k > 0 && top_k < logits.size(0)) {
    const double kth = std::get<0>(logits.topk(top_k))[top_k - 1].item<double>();
    logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
  }
  if (top_p < 1) {
    // In ascending order, drop the tokens whose cumulative probability stays within 1 - top_p,
    // keeping at least the most likely one.
    auto [sorted, order] = logits.sort(/*dim=*/0, /*descending=*/false);  // (V), (V)
    torch::Tensor drop = torch::softmax(sorted, 0).cumsum(0) <= (1 - top_p);
    drop[-1] = false;
    logits = logits.masked_fill(torch::zeros_like(drop).scatter(0, order, drop), -std::numeric_limits<float>::infinity());
  }
  return logits;
}

std::vector<int64_t> generate(model::CausalLmImpl& lm, const std::vector<int64_t>& prompt, const GenerateOptions& o) {
  if (prompt.empty()) fail("generate: the prompt encodes to no tokens");
  if (o.temperature < 0) fail("generate: --temperature must be >= 0, found ", o.temperature);
  if (o.top_k < 0) fail("generate: --top-k must be >= 0, found ", o.top_k);
  if (!(o.top_p > 0 && o.top_p <= 1)) fail("generate: --top-p must be in (0, 1], found ", o.top_p);
  for (int64_t id : prompt)
    if (id < 0 || id >= lm.config.vocab_size)
      fail("generate: prompt token id ", id, " is not below model.vocab_size = ", lm.config.vocab_size);
  torch::NoGradGuard no_grad;
  lm.eval();
  const torch::Device device = lm.parameters().empty() ? torch::Device(torch::kCPU) : lm.parameters()[0].device();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  std::vector<int64_t> tokens = prompt;
  if (static_cast<int64_t>(prompt.size()) > lm.config.max_seq_len)
    std::fprintf(stderr, "generate: the prompt's %zu tokens are more than the model's %lld positions: it sees the last %lld\n",
                 prompt.size(), static_cast<long long>(lm.config.max_seq_len), static_cast<long long>(lm.config.max_seq_len));
  bool said_sliding = static_cast<int64_t>(prompt.size()) >= lm.config.max_seq_len;
  for (int64_t n = 0; n < o.max_new_tokens; ++n) {
    if (!said_sliding && static_cast<int64_t>(tokens.size()) >= lm.config.max_seq_len) {
      std::fprintf(stderr, "\ngenerate: the text fills the model's %lld positions: each further token sees the last %lld\n",
                   static_cast<long long>(lm.config.max_seq_len), static_cast<long long>(lm.config.max_seq_len));
      said_sliding = true;
    }
    const int64_t window = std::min<int64_t>(static_cast<int64_t>(tokens.size()), lm.config.max_seq_len);
    torch::Tensor input = torch::tensor(std::vector<int64_t>(tokens.end() - window, tokens.end()), torch::kInt64)
                              .unsqueeze(0)
                              .to(device);                                   // (1, T)
    // The head on the last position alone: (1, T, E) -> (E) -> (V), never the (T, V) logits.
    torch::Tensor logits = lm.head(lm.hidden(input)[0][window - 1]).to(torch::kCPU, torch::kFloat32);  // (V)
    // The weights were checked finite; activations can still overflow, and an argmax over NaN
    // would pick token 0 forever, silently.
    if (!torch::isfinite(logits).all().item<bool>())
      fail("generate: the model's logits for new token ", n + 1, " hold NaN or Inf although its weights are finite ",
           "(its activations overflow: weights far too large?); nothing can be generated from it");
    int64_t next = 0;
    if (o.temperature == 0) {
      next = logits.argmax().item<int64_t>();
    } else {
      // In fp64: a small temperature would overflow fp32 logits divided by it.
      logits = logits.to(torch::kFloat64) / o.temperature;
      if (!torch::isfinite(logits).all().item<bool>())
        fail("generate: --temperature ", o.temperature, " is too small: the logits divided by it overflow; ",
             "give a larger one, or 0 for greedy decoding");
      logits = filter_logits(logits, o.top_k, o.top_p);
      next = torch::multinomial(torch::softmax(logits, 0), 1, false, generator).item<int64_t>();
    }
    tokens.push_back(next);
    if (o.on_token) o.on_token(tokens);
    if (std::find(o.stop_ids.begin(), o.stop_ids.end(), next) != o.stop_ids.end()) break;
  }
  return tokens;
}

}  // namespace lofi::eval
