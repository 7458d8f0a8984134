// OPT (OPTForCausalLM): learned positions stored with two extra leading rows (looked up at
// position + 2), pre-LayerNorm blocks or opt-350m's post-LayerNorm ones (then no final norm),
// optional project_in/out when the token embedding is narrower than the residual stream, and an
// output head tied to the token embedding (or a separate lm_head). Submodule names give Hugging Face's parameter names
// ("model.decoder.layers.0.self_attn.q_proj.weight", ...): checkpoints need no renaming table.
#pragma once
#include <torch/torch.h>

#include "lofi/model/causal_lm.h"
#include "lofi/model/linear.h"

namespace lofi::model {

// OPT stores learned positions with two extra leading rows and looks up position + 2.
constexpr int64_t kOptPositionOffset = 2;

struct OptAttentionImpl : torch::nn::Module {
  explicit OptAttentionImpl(const LmConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});  // (B, T, C) -> (B, T, C), causal

  int64_t n_head, head_dim;
  double dropout;
  Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(OptAttention);

struct OptDecoderLayerImpl : torch::nn::Module {
  explicit OptDecoderLayerImpl(const LmConfig& c);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask = {});  // (B, T, C) -> (B, T, C)

  std::string activation;
  double dropout;
  bool norm_before;
  OptAttention self_attn{nullptr};
  torch::nn::LayerNorm self_attn_layer_norm{nullptr};
  Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(OptDecoderLayer);

struct OptDecoderImpl : torch::nn::Module {
  explicit OptDecoderImpl(const LmConfig& c);
  // RUN_BLOCK runs each block: activation checkpointing, sharded parameters (block_runner.h).
  torch::Tensor forward(const torch::Tensor& tokens, const Packing& packing = {},
                        const BlockRunner& run_block = {});  // (B, T) int64 -> hidden (B, T, E)

  torch::nn::Embedding embed_tokens{nullptr}, embed_positions{nullptr};
  Linear project_in{nullptr}, project_out{nullptr};  // only when E != C
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};                // only with pre-LayerNorm
  double dropout;
};
TORCH_MODULE(OptDecoder);

struct OptModelImpl : torch::nn::Module {
  explicit OptModelImpl(const LmConfig& c);
  OptDecoder decoder{nullptr};
};
TORCH_MODULE(OptModel);

struct OptForCausalLMImpl : CausalLmImpl {
  explicit OptForCausalLMImpl(const LmConfig& c);
  torch::Tensor hidden(const torch::Tensor& tokens, const Packing& packing) override;  // (B, T) -> final hidden states (B, T, E)
  torch::nn::ModuleList decoder_blocks() const override { return model->decoder->layers; }
  torch::Tensor token_embedding() const override { return model->decoder->embed_tokens->weight; }

  OptModel model{nullptr};
};

}  // namespace lofi::model
