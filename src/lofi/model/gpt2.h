// GPT-2 (GPT2LMHeadModel): learned positions from 0, pre-LayerNorm blocks with a fused QKV
// projection, Conv1D layers whose weights are stored (in, out), a final ln_f and an output head
// tied to wte (or a separate lm_head). Submodule names give Hugging Face's parameter names ("transformer.h.0.attn.c_attn.
// weight", ...), and Conv1D keeps their layout, so checkpoints load with no renaming or transposing.
// The causal-mask buffers old checkpoints carry (attn.bias, attn.masked_bias) are not parameters.
#pragma once
#include <torch/torch.h>

#include "lofi/model/block_runner.h"
#include "lofi/model/blocks.h"
#include "lofi/model/causal_lm.h"

namespace lofi::model {

struct Gpt2AttentionImpl : torch::nn::Module {
  explicit Gpt2AttentionImpl(const LmConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});  // (B, T, C) -> (B, T, C), causal

  int64_t n_head, d_model;
  double attn_dropout, resid_dropout;
  Conv1D c_attn{nullptr}, c_proj{nullptr};  // (C, 3C), (C, C)
};
TORCH_MODULE(Gpt2Attention);

struct Gpt2MlpImpl : torch::nn::Module {
  explicit Gpt2MlpImpl(const LmConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)

  std::string activation;
  double dropout;
  Conv1D c_fc{nullptr}, c_proj{nullptr};  // (C, F), (F, C)
};
TORCH_MODULE(Gpt2Mlp);

struct Gpt2BlockImpl : torch::nn::Module {
  explicit Gpt2BlockImpl(const LmConfig& c);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask = {});  // (B, T, C) -> (B, T, C)

  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Gpt2Attention attn{nullptr};
  Gpt2Mlp mlp{nullptr};
};
TORCH_MODULE(Gpt2Block);

struct Gpt2ModelImpl : torch::nn::Module {
  explicit Gpt2ModelImpl(const LmConfig& c);
  // RUN_BLOCK runs each block: activation checkpointing, sharded parameters (block_runner.h).
  torch::Tensor forward(const torch::Tensor& tokens, const Packing& packing = {},
                        const BlockRunner& run_block = {});  // (B, T) int64 -> hidden (B, T, C)

  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
  double dropout;
};
TORCH_MODULE(Gpt2Model);

struct Gpt2LMHeadModelImpl : CausalLmImpl {
  explicit Gpt2LMHeadModelImpl(const LmConfig& c);
  torch::Tensor hidden(const torch::Tensor& tokens, const Packing& packing) override;  // (B, T) -> final hidden states (B, T, E)
  torch::nn::ModuleList decoder_blocks() const override { return transformer->h; }
  torch::Tensor token_embedding() const override { return transformer->wte->weight; }

  Gpt2Model transformer{nullptr};
};

}  // namespace lofi::model
