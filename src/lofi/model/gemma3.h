// Gemma 3's text decoder (Gemma3ForCausalLM, model_type "gemma3_text": Gemma 3 270M and 1B, and
// the language model of the larger ones, published as image-text models: model/hf_wrapped.h). The Llama
// class's attention (with its query/key norms) and gated MLP (GELU, tanh approximation) in blocks
// of four RMSNorms: before and after the attention and before and after the MLP. Every norm scales
// by 1 + weight (RmsNorm's unit_offset); the token embeddings are scaled by sqrt(d_model), rounded
// to the weights' dtype as transformers rounds it; attention scores by query_pre_attn_scalar^-1/2.
// Every sliding_window_pattern-th layer attends over the whole sequence with rope_theta's rotation
// (and its scaling); the others over sliding_window tokens, rotated at rope_local_theta, unscaled.
// Gemma 2 (archs/gemma2.cpp) builds the same modules: no query/key norms, one rotation for every
// layer, and soft-capped scores and logits (LmConfig's attn_ and final_logit_softcapping).
// Submodule names give Hugging Face's parameter names.
#pragma once
#include <torch/torch.h>

#include "lofi/model/llama.h"

namespace lofi::model {

struct Gemma3DecoderLayerImpl : torch::nn::Module {
  Gemma3DecoderLayerImpl(const LmConfig& c, int64_t layer);
  // X (B, T, C); COS and SIN of this layer's rotation, (T, D) or (B, 1, T, D) -> (B, T, C).
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& cos, const torch::Tensor& sin, const torch::Tensor& mask = {});

  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr}, pre_feedforward_layernorm{nullptr},
      post_feedforward_layernorm{nullptr};
};
TORCH_MODULE(Gemma3DecoderLayer);

struct Gemma3TextModelImpl : torch::nn::Module {
  explicit Gemma3TextModelImpl(const LmConfig& c);
  torch::Tensor forward(const torch::Tensor& tokens, const Packing& packing = {},
                        const BlockRunner& run_block = {});  // (B, T) int64 -> hidden (B, T, C)

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
  double embed_scale;
  std::vector<bool> global;                       // per layer: attends over the whole sequence
  Rotary global_rotary, local_rotary;  // derived from the config, not weights
};
TORCH_MODULE(Gemma3TextModel);

struct Gemma3ForCausalLMImpl : CausalLmImpl {
  explicit Gemma3ForCausalLMImpl(const LmConfig& c);
  torch::Tensor hidden(const torch::Tensor& tokens, const Packing& packing) override;  // (B, T) -> (B, T, C)
  torch::nn::ModuleList decoder_blocks() const override { return model->layers; }
  torch::Tensor token_embedding() const override { return model->embed_tokens->weight; }

  Gemma3TextModel model{nullptr};
};

}  // namespace lofi::model
