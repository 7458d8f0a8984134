// A decoder-only transformer in the OPT layout: learned positions (offset by 2, as OPT stores
// them), pre-LayerNorm blocks, ReLU or GELU MLP, output projection tied to the token embedding.
// Submodules are named so that named_parameters() gives Hugging Face OPT names
// ("model.decoder.layers.0.self_attn.q_proj.weight", ...): checkpoints need no renaming table.
#pragma once
#include <torch/torch.h>

#include <string>

namespace lofi::model {

struct GptConfig {
  int64_t n_layer = 4;              // e.g. 12 for OPT-125M
  int64_t n_head = 4;               // e.g. 12
  int64_t d_model = 128;            // e.g. 768
  int64_t d_ff = 512;               // e.g. 3072
  int64_t vocab_size = 256;         // e.g. 50272
  int64_t max_seq_len = 128;        // e.g. 2048
  std::string activation = "relu";  // "relu" or "gelu" (tanh approximation)
  double dropout = 0.0;
};

// OPT stores learned positions with two extra leading rows and looks up position + 2.
constexpr int64_t kOptPositionOffset = 2;

struct OptAttentionImpl : torch::nn::Module {
  OptAttentionImpl(const GptConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C), causal

  int64_t n_head, head_dim;
  double dropout;
  torch::nn::Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(OptAttention);

struct OptDecoderLayerImpl : torch::nn::Module {
  OptDecoderLayerImpl(const GptConfig& c);
  torch::Tensor forward(torch::Tensor x);  // (B, T, C) -> (B, T, C)

  std::string activation;
  double dropout;
  OptAttention self_attn{nullptr};
  torch::nn::LayerNorm self_attn_layer_norm{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(OptDecoderLayer);

struct OptDecoderImpl : torch::nn::Module {
  OptDecoderImpl(const GptConfig& c);
  torch::Tensor forward(const torch::Tensor& tokens);  // (B, T) int64 -> hidden (B, T, C)

  torch::nn::Embedding embed_tokens{nullptr}, embed_positions{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
  double dropout;
};
TORCH_MODULE(OptDecoder);

struct OptModelImpl : torch::nn::Module {
  OptModelImpl(const GptConfig& c);
  OptDecoder decoder{nullptr};
};
TORCH_MODULE(OptModel);

struct GptImpl : torch::nn::Module {
  explicit GptImpl(const GptConfig& c);
  torch::Tensor forward(const torch::Tensor& tokens);  // (B, T) -> logits (B, T, V)
  // Mean next-token cross-entropy of TARGETS (B, T) given TOKENS (B, T).
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& targets);

  GptConfig config;
  OptModel model{nullptr};
};
TORCH_MODULE(Gpt);

// OPT's initialisation: normal(0, 0.02) for linear and embedding weights, zero biases.
void init_gpt_weights(Gpt& gpt);

}  // namespace lofi::model
