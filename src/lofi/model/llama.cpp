#include "lofi/model/llama.h"

#include <cmath>

#include "lofi/error.h"
#include "lofi/kernels/autocast_operand.h"
#include "lofi/model/block_runner.h"
#include "lofi/model/deferred_weights.h"
#include "lofi/kernels/swiglu.h"

namespace lofi::model {

namespace nn = torch::nn;

LlamaAttentionImpl::LlamaAttentionImpl(const LmConfig& c, int64_t layer, bool unit_offset_norms, const LlamaLayout& layout)
    : n_head(c.n_head), n_kv_head(c.kv_heads()), head_dim(c.head_width()), window(c.layer_window(layer)),
      rotates(c.layer_rotates(layer)),
      scale(c.attention_multiplier > 0
                ? c.attention_multiplier
                : 1.0 / std::sqrt(c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : static_cast<double>(c.head_width()))),
      dropout(c.attention_dropout), softcap(c.attn_logit_softcapping), norms_over_heads(layout.norms_over_heads) {
  const Projections projections = layout.projections;
  auto linear = [](int64_t in, int64_t out, bool bias) { return Linear(in, out, bias); };
  if (projections == Projections::kFused) {
    qkv_proj = register_module("qkv_proj", linear(c.d_model, (n_head + 2 * n_kv_head) * head_dim, c.attention_bias));
  } else {
    q_proj = register_module("q_proj", linear(c.d_model, n_head * head_dim, c.attention_bias));
    k_proj = register_module("k_proj", linear(c.d_model, n_kv_head * head_dim, c.attention_bias));
    v_proj = register_module("v_proj", linear(c.d_model, n_kv_head * head_dim, c.attention_bias));
  }
  o_proj = register_module("o_proj", linear(n_head * head_dim, c.d_model, c.attention_out_bias));
  if (c.qk_norm) {
    const int64_t q_width = norms_over_heads ? n_head * head_dim : head_dim, k_width = norms_over_heads ? n_kv_head * head_dim : head_dim;
    q_norm = register_module("q_norm", RmsNorm(q_width, c.layer_norm_eps, unit_offset_norms));
    k_norm = register_module("k_norm", RmsNorm(k_width, c.layer_norm_eps, unit_offset_norms));
  }
  if (c.attention_sinks) sinks = register_parameter("sinks", torch::zeros({n_head}, parameter_options()));
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& input, const torch::Tensor& cos, const torch::Tensor& sin,
                                          const torch::Tensor& mask) {
  const torch::Tensor x = kernels::autocast_operand(input);  // one copy for q, k and v (kernels/autocast_operand.h)
  const int64_t B = x.size(0), T = x.size(1);
  auto heads = [&](const torch::Tensor& t, int64_t h, RmsNorm norm = RmsNorm(nullptr)) {
    torch::Tensor split = t.view({B, T, h, head_dim});  // (B, T, h*D) -> (B, T, h, D)
    if (norm) split = norm(split);                        // each head normed over its D features (Qwen3)
    return split.transpose(1, 2);                         // -> (B, h, T, D)
  };
  std::vector<torch::Tensor> qkv;
  if (qkv_proj)  // (B, T, (H + 2 Hkv) * D) -> views (B, T, H*D), (B, T, Hkv*D), (B, T, Hkv*D)
    qkv = qkv_proj(x).split_with_sizes({n_head * head_dim, n_kv_head * head_dim, n_kv_head * head_dim}, -1);
  else
    qkv = {q_proj(x), k_proj(x), v_proj(x)};
  torch::Tensor q, k;
  if (norms_over_heads)  // OLMo 2, OLMoE: each norm over the whole (B, T, H*D) projection, then the split
    q = heads(q_norm(qkv[0]), n_head), k = heads(k_norm(qkv[1]), n_kv_head);
  else
    q = heads(qkv[0], n_head, q_norm), k = heads(qkv[1], n_kv_head, k_norm);
  if (rotates) q = apply_rope(q, cos, sin), k = apply_rope(k, cos, sin);
  torch::Tensor y = causal_attention_heads(q, k, heads(qkv[2], n_kv_head), scale, window, dropout, is_training(), mask,
                                           softcap, sinks);  // (B, H, T, D)
  return o_proj(y.transpose(1, 2).reshape({B, T, n_head * head_dim}));      // (B, H, T, D) -> (B, T, H*D) -> (B, T, C)
}

LlamaMlpImpl::LlamaMlpImpl(const LmConfig& c, Projections projections) : activation(c.activation) {
  auto linear = [&](int64_t in, int64_t out) { return Linear(in, out, c.mlp_bias); };
  if (projections == Projections::kFused) {
    gate_up_proj = register_module("gate_up_proj", linear(c.d_model, 2 * c.d_ff));
  } else {
    gate_proj = register_module("gate_proj", linear(c.d_model, c.d_ff));
    up_proj = register_module("up_proj", linear(c.d_model, c.d_ff));
  }
  down_proj = register_module("down_proj", linear(c.d_ff, c.d_model));
}

torch::Tensor LlamaMlpImpl::forward(const torch::Tensor& input) {
  const torch::Tensor x = kernels::autocast_operand(input);  // one copy for gate and up
  torch::Tensor gate, up;
  if (gate_up_proj) {
    auto halves = gate_up_proj(x).chunk(2, -1);  // (B, T, 2F) -> views (B, T, F) x 2
    gate = halves[0], up = halves[1];
  } else {
    gate = gate_proj(x), up = up_proj(x);
  }
  // SiLU, the gated MLP of Llama, Qwen2 and Mistral: one fused pass each way (kernels/swiglu.h).
  if (activation == "silu") return down_proj(kernels::swiglu(gate, up));
  return down_proj(activate(gate, activation) * up);
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LmConfig& c, int64_t layer, const LlamaLayout& layout)
    : residual_multiplier(c.residual_multiplier) {
  self_attn = register_module("self_attn", LlamaAttention(c, layer, /*unit_offset_norms=*/false, layout));
  if (c.num_experts > 0) {
    experts = layout.make_moe ? layout.make_moe(c) : torch::nn::AnyModule(SparseMoe(c, layout.moe));
    register_module(layout.moe.block, experts.ptr());
  } else {
    mlp = register_module("mlp", LlamaMlp(c, layout.projections));
  }
  if (!layout.post_norms) input_layernorm = register_module("input_layernorm", RmsNorm(c.d_model, c.layer_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RmsNorm(c.d_model, c.layer_norm_eps));
  if (layout.post_norms) post_feedforward_layernorm = register_module("post_feedforward_layernorm", RmsNorm(c.d_model, c.layer_norm_eps));
}

torch::Tensor LlamaDecoderLayerImpl::forward(torch::Tensor x, const torch::Tensor& cos, const torch::Tensor& sin,
                                             const torch::Tensor& mask) {
  // The attention's residual add and the norm after it: one pass each way (kernels/rms_norm.h).
  auto ffn = [&](const torch::Tensor& in) { return mlp ? mlp(in) : experts.forward<torch::Tensor>(in); };
  if (post_feedforward_layernorm) {  // OLMo 2: each branch normed at its output, its input as it is
    torch::Tensor h = x + post_attention_layernorm(self_attn(x, cos, sin, mask));
    return h + post_feedforward_layernorm(ffn(h));
  }
  if (residual_multiplier != 1.0) {  // Granite: each branch scaled before its residual add
    auto [h, normed] = post_attention_layernorm->forward_added(x, self_attn(input_layernorm(x), cos, sin, mask) * residual_multiplier);
    return h + ffn(normed) * residual_multiplier;
  }
  auto [h, normed] = post_attention_layernorm->forward_added(x, self_attn(input_layernorm(x), cos, sin, mask));
  return h + ffn(normed);
}

LlamaModelImpl::LlamaModelImpl(const LmConfig& c, const LlamaLayout& layout)
    : rotary(make_rotary(c)), embedding_multiplier(c.embedding_multiplier) {
  embed_tokens = register_module("embed_tokens", lm_embedding(c.vocab_size, c.d_model));
  layers = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) layers->push_back(LlamaDecoderLayer(c, i, layout));
  norm = register_module("norm", RmsNorm(c.d_model, c.layer_norm_eps));
}

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& tokens, const Packing& packing, const BlockRunner& run_block) {
  torch::Tensor x = embed_tokens(tokens);  // (B, T, C)
  if (embedding_multiplier != 1.0) x = x * embedding_multiplier;  // Granite
  const auto angles = rope_angles(rotary, packing, x);
  const torch::Tensor cos = angles.first, sin = angles.second;
  for (size_t i = 0; i < layers->size(); ++i) {
    LlamaDecoderLayer layer = layers->ptr<LlamaDecoderLayerImpl>(i);
    x = run_block(static_cast<int64_t>(i), [layer, cos, sin, mask = packing.mask](const torch::Tensor& h) mutable { return layer->forward(h, cos, sin, mask); }, x);
  }
  return norm(x);
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LmConfig& c, const LlamaLayout& layout)
    : CausalLmImpl(c), logits_scaling(c.logits_scaling) {
  model = register_module("model", LlamaModel(c, layout));
  register_head(c.d_model);
}

torch::Tensor LlamaForCausalLMImpl::hidden(const torch::Tensor& tokens, const Packing& packing) {
  torch::Tensor h = model->forward(tokens, packing, block_runner());
  return logits_scaling != 1.0 ? h / logits_scaling : h;  // Granite: the head's products divided, as its logits are
}

}  // namespace lofi::model
