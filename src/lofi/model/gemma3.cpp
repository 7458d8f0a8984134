#include "lofi/model/gemma3.h"

#include <cmath>

namespace lofi::model {

Gemma3DecoderLayerImpl::Gemma3DecoderLayerImpl(const LmConfig& c, int64_t layer) {
  self_attn = register_module("self_attn", LlamaAttention(c, layer, /*unit_offset_norms=*/true));
  mlp = register_module("mlp", LlamaMlp(c));
  auto norm = [&](const char* name) { return register_module(name, RmsNorm(c.d_model, c.layer_norm_eps, /*unit_offset=*/true)); };
  input_layernorm = norm("input_layernorm");
  post_attention_layernorm = norm("post_attention_layernorm");
  pre_feedforward_layernorm = norm("pre_feedforward_layernorm");
  post_feedforward_layernorm = norm("post_feedforward_layernorm");
}

torch::Tensor Gemma3DecoderLayerImpl::forward(torch::Tensor x, const torch::Tensor& cos, const torch::Tensor& sin,
                                              const torch::Tensor& mask) {
  // The attention's normed output added to the stream and the MLP's norm of the sum: one pass
  // each way over an fp32 stream (kernels/rms_norm.h).
  auto [h, normed] = pre_feedforward_layernorm->forward_added(x, post_attention_layernorm(self_attn(input_layernorm(x), cos, sin, mask)));
  return h + post_feedforward_layernorm(mlp(normed));
}

Gemma3TextModelImpl::Gemma3TextModelImpl(const LmConfig& c) : embed_scale(std::sqrt(static_cast<double>(c.d_model))) {
  embed_tokens = register_module("embed_tokens", lm_embedding(c.vocab_size, c.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) {
    layers->push_back(Gemma3DecoderLayer(c, i));
    global.push_back(c.layer_window(i) == 0);
  }
  norm = register_module("norm", RmsNorm(c.d_model, c.layer_norm_eps, /*unit_offset=*/true));
  global_rotary = make_rotary(c);
  LmConfig local = c;  // the sliding layers' rotation: their own base, unscaled
  local.rope_theta = c.rope_local_theta > 0 ? c.rope_local_theta : c.rope_theta;
  local.rope_scaling = "default";
  local_rotary = make_rotary(local);
}

torch::Tensor Gemma3TextModelImpl::forward(const torch::Tensor& tokens, const Packing& packing, const BlockRunner& run_block) {
  torch::Tensor x = embed_tokens(tokens);  // (B, T, C)
  x = x * torch::scalar_tensor(embed_scale, x.options());  // the scale in the weights' dtype, as transformers rounds it
  const auto global_angles = rope_angles(global_rotary, packing, x), local_angles = rope_angles(local_rotary, packing, x);
  for (size_t i = 0; i < layers->size(); ++i) {
    Gemma3DecoderLayer layer = layers->ptr<Gemma3DecoderLayerImpl>(i);
    const auto& [cos, sin] = global[i] ? global_angles : local_angles;
    x = run_block(static_cast<int64_t>(i),
                  [layer, cos = cos, sin = sin, mask = packing.mask](const torch::Tensor& h) mutable { return layer->forward(h, cos, sin, mask); },
                  x);
  }
  return norm(x);
}

Gemma3ForCausalLMImpl::Gemma3ForCausalLMImpl(const LmConfig& c) : CausalLmImpl(c) {
  model = register_module("model", Gemma3TextModel(c));
  register_head(c.d_model);
}

torch::Tensor Gemma3ForCausalLMImpl::hidden(const torch::Tensor& tokens, const Packing& packing) {
  return model->forward(tokens, packing, block_runner());
}

}  // namespace lofi::model
