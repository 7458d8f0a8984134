#include "lofi/model/blocks.h"

#include <limits>

#include "lofi/error.h"

namespace lofi::model {

torch::nn::LayerNorm lm_layer_norm(const LmConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}).eps(c.layer_norm_eps));
}

torch::Tensor maybe_dropout(const torch::Tensor& x, double p, bool training) {
  return p > 0 && training ? torch::dropout(x, p, true) : x;
}

torch::Tensor activate(const torch::Tensor& x, const std::string& activation) {
  if (activation == "relu") return torch::relu(x);
  if (activation == "gelu") return torch::gelu(x, "tanh");
  if (activation == "gelu_erf") return torch::gelu(x);
  fail("unknown activation \"", activation, "\" (expected relu, gelu or gelu_erf)");
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t n_head,
                               double dropout, bool training) {
  const int64_t B = q.size(0), T = q.size(1), C = q.size(2), D = C / n_head;
  auto heads = [&](const torch::Tensor& t) {
    return t.view({B, T, n_head, D}).transpose(1, 2);  // (B, T, C) -> (B, H, T, D)
  };
  torch::Tensor scores = torch::matmul(heads(q), heads(k).transpose(-2, -1));  // (B, H, T, T)
  torch::Tensor future = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool)).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  torch::Tensor probs = maybe_dropout(torch::softmax(scores, -1), dropout, training);
  torch::Tensor y = torch::matmul(probs, heads(v));       // (B, H, T, D)
  return y.transpose(1, 2).contiguous().view({B, T, C});  // (B, H, T, D) -> (B, T, C)
}

Conv1DImpl::Conv1DImpl(int64_t in, int64_t out) {
  weight = register_parameter("weight", torch::empty({in, out}));
  bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor Conv1DImpl::forward(const torch::Tensor& x) {
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = weight.size(1);
  torch::Tensor y = torch::addmm(bias, x.reshape({-1, weight.size(0)}), weight);  // (N, in) @ (in, out) -> (N, out)
  return y.view(shape);                                                          // (N, out) -> (..., out)
}

}  // namespace lofi::model
