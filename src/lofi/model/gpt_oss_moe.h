// gpt-oss's mixture of experts (transformers' GptOssMLP): a router with a bias picks each token's
// experts_per_token of num_experts by its logits, their weights the softmax of the chosen logits
// alone; each expert is a gated MLP with biases whose gate is clamped to at most swiglu_limit and
// whose up projection to [-limit, limit], out = (up + 1) * gate * sigmoid(swiglu_alpha * gate).
// The experts are held as the checkpoints hold them: three-dimensional tensors over the experts,
// inputs before outputs (x @ W + b), gate and up interleaved in gate_up_proj's last dimension
// (gate in the even columns): mlp.experts.gate_up_proj (E, C, 2F), gate_up_proj_bias (E, 2F),
// down_proj (E, F, C), down_proj_bias (E, C); mlp.router.weight (E, C), router.bias (E).
// Neither takes a LoRA adapter (bare parameters in transformers, which "all-linear" does not reach).
#pragma once
#include <torch/torch.h>

#include "lofi/model/linear.h"
#include "lofi/model/lm_config.h"

namespace lofi::model {

struct GptOssExpertsImpl : torch::nn::Module {
  explicit GptOssExpertsImpl(const LmConfig& c);
  // Expert E's output for its rows X (M, C): (M, C). WEIGHTS: the four tensors as
  // expert_weights() gives them (split once a forward pass, not once an expert).
  torch::Tensor forward(int64_t e, const torch::Tensor& x, const std::vector<std::vector<torch::Tensor>>& weights) const;
  // {gate_up_proj, gate_up_proj_bias, down_proj, down_proj_bias}, each split by expert.
  std::vector<std::vector<torch::Tensor>> expert_weights() const;

  double limit, alpha;
  torch::Tensor gate_up_proj, gate_up_proj_bias, down_proj, down_proj_bias;
};
TORCH_MODULE(GptOssExperts);

struct GptOssMoeImpl : torch::nn::Module {
  explicit GptOssMoeImpl(const LmConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)

  int64_t top_k;
  Linear router{nullptr};  // (C, E) with a bias
  GptOssExperts experts{nullptr};
};
TORCH_MODULE(GptOssMoe);

}  // namespace lofi::model
