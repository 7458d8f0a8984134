// Pieces the causal-LM architectures share: dropout that costs nothing at p = 0, the activation
// by name, the masked multi-head attention core (grouped-query and sliding-window included),
// RMSNorm; the linear layers (Linear, GPT-2's Conv1D) are in linear.h. Each
// architecture's modules (opt.*, gpt2.*, llama.*) are built from these.
#pragma once
#include <torch/torch.h>

#include <string>

#include "lofi/model/linear.h"
#include "lofi/model/lm_config.h"

namespace lofi::model {

// Dropout only where it does something: the common fine-tuning setting is p = 0.
// A LayerNorm over the residual width with the config's epsilon.
torch::nn::LayerNorm lm_layer_norm(const LmConfig& c);
// A decoder's embedding table (ROWS, WIDTH), torch's module: its own normal(0, 1) draw unless init
// draws are skipped (deferred_weights.h), then made without one.
torch::nn::Embedding lm_embedding(int64_t rows, int64_t width);

torch::Tensor maybe_dropout(const torch::Tensor& x, double p, bool training);

// "relu", "gelu" (tanh approximation: HF gelu_new), "gelu_erf" (exact: HF gelu) or "silu".
torch::Tensor activate(const torch::Tensor& x, const std::string& activation);
bool is_activation(const std::string& activation);
std::string activation_list();  // for messages

// Several samples packed into each row of tokens (chat fine-tuning data): each token's position
// within its own sample, and which keys each query may see (its own sample's, up to itself), so
// no sample attends to another. Empty (undefined tensors): one sequence per row, positions
// 0..T-1, plain causal attention.
struct Packing {
  torch::Tensor positions;  // (B, T) int64
  torch::Tensor mask;       // (B, 1, T, T) bool: query t may attend to key s
  bool empty() const { return !positions.defined(); }
};
// From each token's sample number SEGMENTS (B, T) int64, equal along a sample (padding: a sample
// of its own): positions restart at 0 where the number changes; the mask is causal and
// block-diagonal.
Packing pack_rows(const torch::Tensor& segments);

// Causal multi-head attention of already projected Q, K, V (B, T, C) with N_HEAD heads; Q comes
// scaled by the caller (OPT scales the projection, GPT-2 the scores; the caller keeps its
// reference's order). Returns the heads merged back: (B, T, C).
// MASK (B, 1, T, T) bool, when defined, replaces the causal mask (Packing::mask).
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t n_head,
                               double dropout, bool training, const torch::Tensor& mask = {});

// The same on heads already split: Q (B, H, T, D), K and V (B, H_kv, T, D) with H a multiple of
// H_kv (grouped-query attention: each key/value head serves H / H_kv query heads, consecutive, as
// transformers' repeat_kv lays them out). WINDOW > 0: each position attends to the WINDOW
// positions ending at itself (Mistral's sliding window). Scores scaled by SCALE. -> (B, H, T, D).
// On a GPU, grouped heads with a mask (packed rows, a sliding window) or in fp32 are expanded to H
// heads first (expand_kv_heads): no fused kernel there takes both, and the fallback would hold the
// (B, H, T, T) scores. SOFTCAP > 0 (Gemma 2): each scaled score becomes SOFTCAP * tanh(score /
// SOFTCAP) before the mask; no fused kernel takes that, so those scores are held (eager_attention).
// SINKS (H) defined (gpt-oss): each head's sink logit joins every query's softmax, through the
// fused kernel as one more key that every query sees, with a value of zeros (model/blocks.cpp).
torch::Tensor causal_attention_heads(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                                     int64_t window, double dropout, bool training, const torch::Tensor& mask = {},
                                     double softcap = 0, const torch::Tensor& sinks = {});

// Attention on explicit scores, as transformers' eager attention computes it for Gemma 2 and gpt-oss
// (causal_attention_heads takes it for soft caps; for sinks alone it is the reference of the fused way):
// scores = Q K^T * SCALE, soft-capped to CAP * tanh(scores / CAP) where CAP > 0, the keys ALLOWED
// (T, T) or (B, 1, T, T) bool kept, each head's logit of SINKS (H) appended as one more column
// where defined (it takes its share of the softmax and attends to nothing: the column is dropped
// after), softmax in fp32, cast back to Q's dtype, dropout P, times V. Q (B, H, T, D), K and V
// (B, H_kv, T, D) -> (B, H, T, D). LibTorch's scaled_dot_product_attention has no score function
// or sink (flash-attention's softcap is not exposed), so this holds the (B, H, T, T) scores for backward.
torch::Tensor eager_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& allowed,
                              double scale, double cap, const torch::Tensor& sinks, double p);

// KV (B, H_kv, T, D) with each head repeated for the H / H_kv query heads it serves, consecutive,
// as transformers' repeat_kv does: (B, H, T, D).
torch::Tensor expand_kv_heads(const torch::Tensor& kv, int64_t heads);

// {X + RESIDUAL, NORM(X + RESIDUAL)}: a residual add and a LayerNorm of its result, fused for an fp32
// stream and an fp32 scale and bias (kernels::add_layer_norm), else the add and then NORM.
std::pair<torch::Tensor, torch::Tensor> add_layer_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                       torch::nn::LayerNorm& norm);

// Root-mean-square normalisation with a learned scale, computed in fp32 and scaled in the input's
// dtype, as transformers' LlamaRMSNorm: weight * (x / sqrt(mean(x^2) + eps)).
struct RmsNormImpl : torch::nn::Module {
  // UNIT_OFFSET: scaled by 1 + weight, the weight starting at 0 (Gemma), computed as Gemma's norm is
  // (the scale applied in fp32, then cast back); else by weight, starting at 1 (Llama).
  RmsNormImpl(int64_t width, double eps, bool unit_offset = false);
  torch::Tensor forward(const torch::Tensor& x);  // (..., width) -> (..., width)
  // {X + RESIDUAL, forward(X + RESIDUAL)}: a residual add and this norm of its result, fused for an
  // fp32 stream and scale (kernels::add_rms_norm), else the add and then forward().
  std::pair<torch::Tensor, torch::Tensor> forward_added(const torch::Tensor& x, const torch::Tensor& residual);

  torch::Tensor weight;  // (width)
  double eps;
  bool unit_offset;
};
TORCH_MODULE(RmsNorm);
// transformers' LlamaRMSNorm as plain ops, for inputs that are not fp32 and as the tests' reference.
torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps);
// transformers' Gemma3RMSNorm as plain ops: the norm of x in fp32, times 1 + weight in fp32, in x's dtype.
torch::Tensor unit_offset_rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps);


}  // namespace lofi::model
