// Llama-class decoders (LlamaForCausalLM, and Qwen2, Qwen3, Mistral and Phi-3, which share its modules): no
// learned positions but rotary embeddings on queries and keys (Hugging Face's rotate-half
// layout, rope_theta and the scalings of rotary.h), grouped-query attention,
// pre-RMSNorm blocks (Qwen3: RMSNorm of each query and key head too), a SwiGLU MLP, a final
// RMSNorm and a tied or separate lm_head (Phi-3: q/k/v and gate/up fused). Submodule
// names give Hugging Face's parameter names ("model.layers.0.self_attn.q_proj.weight", ...).
#pragma once
#include <torch/torch.h>

#include "lofi/model/block_runner.h"
#include "lofi/model/blocks.h"
#include "lofi/model/causal_lm.h"
#include "lofi/model/moe.h"
#include "lofi/model/rotary.h"

namespace lofi::model {

// How a model of the class lays out its projections: separate q/k/v and gate/up layers (Llama's),
// or one of each, fused (Phi-3's qkv_proj and gate_up_proj, whose outputs are those layers' side by side).
enum class Projections { kSeparate, kFused };

// What an architecture of the class arranges that LmConfig does not say (archs/*.cpp choose it).
struct LlamaLayout {
  Projections projections = Projections::kSeparate;
  MoeNames moe;  // a mixture of experts' names, where LmConfig::num_experts > 0
  // OLMo 2: a norm after the attention and one after the MLP, each before its residual add, and
  // none before them.
  bool post_norms = false;
  // OLMo 2 and OLMoE: the query and key norms over all heads together (q_norm (H*D), k_norm
  // (Hkv*D), before the split into heads), not over each head.
  bool norms_over_heads = false;
  // An architecture's own mixture of experts (gpt-oss's, model/gpt_oss_moe.h), registered as
  // moe.block; empty: SparseMoe.
  MoeFactory make_moe;
};

struct LlamaAttentionImpl : torch::nn::Module {
  // Block LAYER's (its window: LmConfig::layer_window); UNIT_OFFSET_NORMS: Gemma's query/key norms.
  explicit LlamaAttentionImpl(const LmConfig& c, int64_t layer = 0, bool unit_offset_norms = false, const LlamaLayout& layout = {});
  // X (B, T, C), COS and SIN (T, D) -> (B, T, C), causal.
  // COS and SIN (T, D), or (B, 1, T, D) for packed rows; MASK (B, 1, T, T) for packed rows.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, const torch::Tensor& mask = {});

  int64_t n_head, n_kv_head, head_dim, window;
  bool rotates;  // false in SmolLM3's NoPE layers (LmConfig::layer_rotates)
  // Scores times SCALE: 1 / sqrt(head_dim), Gemma's query_pre_attn_scalar^-1/2 or Granite's attention_multiplier.
  double scale, dropout;
  double softcap;  // Gemma 2's attn_logit_softcapping; 0: none
  torch::Tensor sinks;  // gpt-oss's (LmConfig::attention_sinks): a logit per head, (H)
  bool norms_over_heads;  // q_norm and k_norm over all heads together (OLMo 2, OLMoE)
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};  // (C, H*D), (C, Hkv*D) x 2, (H*D, C)
  Linear qkv_proj{nullptr};  // fused instead of q, k and v: (C, (H + 2 Hkv) * D)
  RmsNorm q_norm{nullptr}, k_norm{nullptr};  // (D) each, over every head before the rotation; only with qk_norm (Qwen3); OLMo 2: (H*D), (Hkv*D)
};
TORCH_MODULE(LlamaAttention);

struct LlamaMlpImpl : torch::nn::Module {
  explicit LlamaMlpImpl(const LmConfig& c, Projections projections = Projections::kSeparate);
  torch::Tensor forward(const torch::Tensor& x);  // down(act(gate(x)) * up(x)): (B, T, C) -> (B, T, C)

  std::string activation;
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};  // (C, F), (C, F), (F, C)
  Linear gate_up_proj{nullptr};  // fused instead of gate and up: (C, 2F), gate's half first
};
TORCH_MODULE(LlamaMlp);

struct LlamaDecoderLayerImpl : torch::nn::Module {
  // A mixture of experts (moe.h) in place of the MLP where C.num_experts > 0.
  LlamaDecoderLayerImpl(const LmConfig& c, int64_t layer, const LlamaLayout& layout = {});
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask = {});  // (B, T, C) -> (B, T, C)

  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
  torch::nn::AnyModule experts;  // instead of mlp: SparseMoe, or LlamaLayout::make_moe's
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  RmsNorm post_feedforward_layernorm{nullptr};  // OLMo 2's (LlamaLayout::post_norms), which has no input_layernorm
  double residual_multiplier;                   // Granite's
};
TORCH_MODULE(LlamaDecoderLayer);

struct LlamaModelImpl : torch::nn::Module {
  explicit LlamaModelImpl(const LmConfig& c, const LlamaLayout& layout = {});
  // RUN_BLOCK runs each block: activation checkpointing, sharded parameters (block_runner.h).
  torch::Tensor forward(const torch::Tensor& tokens, const Packing& packing = {},
                        const BlockRunner& run_block = {});  // (B, T) int64 -> hidden (B, T, C)

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
  Rotary rotary;  // derived from the config, not weights
  double embedding_multiplier;  // Granite's
};
TORCH_MODULE(LlamaModel);

struct LlamaForCausalLMImpl : CausalLmImpl {
  explicit LlamaForCausalLMImpl(const LmConfig& c, const LlamaLayout& layout = {});
  torch::Tensor hidden(const torch::Tensor& tokens, const Packing& packing) override;  // (B, T) -> final hidden states (B, T, E)
  torch::nn::ModuleList decoder_blocks() const override { return model->layers; }
  torch::Tensor token_embedding() const override { return model->embed_tokens->weight; }

  LlamaModel model{nullptr};
  double logits_scaling;  // Granite's: the final hidden states divided by it, so the logits are
};

}  // namespace lofi::model
