#include "lofi/model/gpt2.h"

#include <cmath>

#include "lofi/error.h"
#include "lofi/kernels/autocast_operand.h"
#include "lofi/model/blocks.h"
#include "lofi/model/block_runner.h"

namespace lofi::model {

namespace nn = torch::nn;

Gpt2AttentionImpl::Gpt2AttentionImpl(const LmConfig& c)
    : n_head(c.n_head), d_model(c.d_model), attn_dropout(c.attention_dropout), resid_dropout(c.dropout) {
  c_attn = register_module("c_attn", Conv1D(c.d_model, 3 * c.d_model));
  c_proj = register_module("c_proj", Conv1D(c.d_model, c.d_model));
}

torch::Tensor Gpt2AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  std::vector<torch::Tensor> qkv = c_attn(kernels::autocast_operand(x)).split(d_model, /*dim=*/2);  // (B, T, 3C) -> 3 x (B, T, C)
  // GPT-2 divides the scores by sqrt(head_dim) (scale_attn_weights); scaling q first is the
  // same product.
  torch::Tensor q = qkv[0] * (1.0 / std::sqrt(static_cast<double>(d_model / n_head)));
  torch::Tensor y = causal_attention(q, qkv[1], qkv[2], n_head, attn_dropout, is_training(), mask);
  return maybe_dropout(c_proj(y), resid_dropout, is_training());
}

Gpt2MlpImpl::Gpt2MlpImpl(const LmConfig& c) : activation(c.activation), dropout(c.dropout) {
  c_fc = register_module("c_fc", Conv1D(c.d_model, c.d_ff));
  c_proj = register_module("c_proj", Conv1D(c.d_ff, c.d_model));
}

torch::Tensor Gpt2MlpImpl::forward(const torch::Tensor& x) {
  return maybe_dropout(c_proj(c_fc->forward_activated(kernels::autocast_operand(x), activation)), dropout, is_training());
}

Gpt2BlockImpl::Gpt2BlockImpl(const LmConfig& c) {
  ln_1 = register_module("ln_1", lm_layer_norm(c));
  attn = register_module("attn", Gpt2Attention(c));
  ln_2 = register_module("ln_2", lm_layer_norm(c));
  mlp = register_module("mlp", Gpt2Mlp(c));
}

torch::Tensor Gpt2BlockImpl::forward(torch::Tensor x, const torch::Tensor& mask) {
  // The attention's residual add and the norm after it: one pass each way (kernels/layer_norm.h).
  auto [h, normed] = add_layer_norm(x, attn(ln_1(x), mask), ln_2);
  return h + mlp(normed);
}

Gpt2ModelImpl::Gpt2ModelImpl(const LmConfig& c) : dropout(c.embedding_dropout) {
  wte = register_module("wte", lm_embedding(c.vocab_size, c.d_model));
  wpe = register_module("wpe", lm_embedding(c.max_seq_len, c.d_model));
  h = register_module("h", nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) h->push_back(Gpt2Block(c));
  ln_f = register_module("ln_f", lm_layer_norm(c));
}

torch::Tensor Gpt2ModelImpl::forward(const torch::Tensor& tokens, const Packing& packing, const BlockRunner& run_block) {
  const int64_t T = tokens.size(1);
  if (T > wpe->weight.size(0)) fail("sequence of ", T, " tokens is longer than the model's ", wpe->weight.size(0), " positions");
  torch::Tensor positions = packing.empty() ? torch::arange(T, tokens.options().dtype(torch::kLong)) : packing.positions;  // (T) or (B, T)
  torch::Tensor x = wte(tokens) + wpe(positions);  // (B, T, C) + (T, C) or (B, T, C)
  x = maybe_dropout(x, dropout, is_training());
  for (size_t i = 0; i < h->size(); ++i) {
    Gpt2Block block = h->ptr<Gpt2BlockImpl>(i);
    x = run_block(static_cast<int64_t>(i), [block, mask = packing.mask](const torch::Tensor& y) mutable { return block->forward(y, mask); }, x);
  }
  return ln_f(x);
}

Gpt2LMHeadModelImpl::Gpt2LMHeadModelImpl(const LmConfig& c) : CausalLmImpl(c) {
  transformer = register_module("transformer", Gpt2Model(c));
  register_head(c.d_model);
}

torch::Tensor Gpt2LMHeadModelImpl::hidden(const torch::Tensor& tokens, const Packing& packing) {
  return transformer->forward(tokens, packing, block_runner());
}

}  // namespace lofi::model
