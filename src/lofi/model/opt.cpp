#include "lofi/model/opt.h"

#include <cmath>

#include "lofi/error.h"
#include "lofi/kernels/autocast_operand.h"
#include "lofi/model/blocks.h"
#include "lofi/model/block_runner.h"

namespace lofi::model {

namespace nn = torch::nn;

OptAttentionImpl::OptAttentionImpl(const LmConfig& c)
    : n_head(c.n_head), head_dim(c.d_model / c.n_head), dropout(c.attention_dropout) {
  k_proj = register_module("k_proj", Linear(c.d_model, c.d_model));
  v_proj = register_module("v_proj", Linear(c.d_model, c.d_model));
  q_proj = register_module("q_proj", Linear(c.d_model, c.d_model));
  out_proj = register_module("out_proj", Linear(c.d_model, c.d_model));
}

torch::Tensor OptAttentionImpl::forward(const torch::Tensor& input, const torch::Tensor& mask) {
  const torch::Tensor x = kernels::autocast_operand(input);  // one copy for q, k and v (kernels/autocast_operand.h)
  // OPT scales the query projection, not the scores (same order as the reference).
  torch::Tensor q = q_proj(x) * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  return out_proj(causal_attention(q, k_proj(x), v_proj(x), n_head, dropout, is_training(), mask));
}

OptDecoderLayerImpl::OptDecoderLayerImpl(const LmConfig& c)
    : activation(c.activation), dropout(c.dropout), norm_before(c.do_layer_norm_before) {
  self_attn = register_module("self_attn", OptAttention(c));
  self_attn_layer_norm = register_module("self_attn_layer_norm", lm_layer_norm(c));
  fc1 = register_module("fc1", Linear(c.d_model, c.d_ff));
  fc2 = register_module("fc2", Linear(c.d_ff, c.d_model));
  final_layer_norm = register_module("final_layer_norm", lm_layer_norm(c));
}

torch::Tensor OptDecoderLayerImpl::forward(torch::Tensor x, const torch::Tensor& mask) {
  // Pre-LayerNorm normalises each branch's input; post-LayerNorm (opt-350m) the sum after it.
  // Each residual add and the norm after it are one pass each way (kernels/layer_norm.h): pre-LN
  // goes on from the sum and feeds the norm to the MLP, post-LN goes on from the norm.
  torch::Tensor h = self_attn(norm_before ? self_attn_layer_norm(x) : x, mask);
  auto [sum, normed] = add_layer_norm(x, maybe_dropout(h, dropout, is_training()), norm_before ? final_layer_norm : self_attn_layer_norm);
  h = fc1->forward_activated(kernels::autocast_operand(normed), activation);
  h = maybe_dropout(fc2(h), dropout, is_training());
  if (norm_before) return sum + h;
  return add_layer_norm(normed, h, final_layer_norm).second;
}

OptDecoderImpl::OptDecoderImpl(const LmConfig& c) : dropout(c.embedding_dropout) {
  const int64_t E = c.word_embed_proj_dim > 0 ? c.word_embed_proj_dim : c.d_model;
  embed_tokens = register_module("embed_tokens", lm_embedding(c.vocab_size, E));
  embed_positions = register_module("embed_positions", lm_embedding(c.max_seq_len + kOptPositionOffset, c.d_model));
  if (E != c.d_model) {
    project_out = register_module("project_out", Linear(c.d_model, E, false));
    project_in = register_module("project_in", Linear(E, c.d_model, false));
  }
  if (c.do_layer_norm_before) final_layer_norm = register_module("final_layer_norm", lm_layer_norm(c));
  layers = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) layers->push_back(OptDecoderLayer(c));
}

torch::Tensor OptDecoderImpl::forward(const torch::Tensor& tokens, const Packing& packing, const BlockRunner& run_block) {
  const int64_t T = tokens.size(1);
  const int64_t max_positions = embed_positions->weight.size(0) - kOptPositionOffset;
  if (T > max_positions) fail("sequence of ", T, " tokens is longer than the model's ", max_positions, " positions");
  torch::Tensor positions = packing.empty() ? torch::arange(kOptPositionOffset, T + kOptPositionOffset, tokens.options().dtype(torch::kLong))  // (T)
                                            : packing.positions + kOptPositionOffset;                                                  // (B, T)
  torch::Tensor x = embed_tokens(tokens);                                  // (B, T, E)
  if (project_in) x = project_in(x);                                       // (B, T, E) -> (B, T, C)
  x = maybe_dropout(x + embed_positions(positions), dropout, is_training());  // (B, T, C)
  for (size_t i = 0; i < layers->size(); ++i) {
    OptDecoderLayer layer = layers->ptr<OptDecoderLayerImpl>(i);
    x = run_block(static_cast<int64_t>(i), [layer, mask = packing.mask](const torch::Tensor& h) mutable { return layer->forward(h, mask); }, x);
  }
  if (final_layer_norm) x = final_layer_norm(x);
  return project_out ? project_out(x) : x;  // (B, T, C) -> (B, T, E)
}

OptModelImpl::OptModelImpl(const LmConfig& c) { decoder = register_module("decoder", OptDecoder(c)); }

OptForCausalLMImpl::OptForCausalLMImpl(const LmConfig& c) : CausalLmImpl(c) {
  model = register_module("model", OptModel(c));
  register_head(c.word_embed_proj_dim > 0 ? c.word_embed_proj_dim : c.d_model);
}

torch::Tensor OptForCausalLMImpl::hidden(const torch::Tensor& tokens, const Packing& packing) {
  return model->decoder->forward(tokens, packing, block_runner());
}

}  // namespace lofi::model
