#include "lofi/model/gpt.h"

#include <cmath>
#include <limits>

#include "lofi/error.h"

namespace lofi::model {

namespace nn = torch::nn;

namespace {
// Dropout only where it does something: the common fine-tuning setting is p = 0.
torch::Tensor maybe_dropout(const torch::Tensor& x, double p, bool training) {
  return p > 0 && training ? torch::dropout(x, p, true) : x;
}
}  // namespace

OptAttentionImpl::OptAttentionImpl(const GptConfig& c)
    : n_head(c.n_head), head_dim(c.d_model / c.n_head), dropout(c.dropout) {
  k_proj = register_module("k_proj", nn::Linear(c.d_model, c.d_model));
  v_proj = register_module("v_proj", nn::Linear(c.d_model, c.d_model));
  q_proj = register_module("q_proj", nn::Linear(c.d_model, c.d_model));
  out_proj = register_module("out_proj", nn::Linear(c.d_model, c.d_model));
}

torch::Tensor OptAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  auto heads = [&](const torch::Tensor& t) {
    return t.view({B, T, n_head, head_dim}).transpose(1, 2);  // (B, T, C) -> (B, H, T, D)
  };
  torch::Tensor q = heads(q_proj(x) * (1.0 / std::sqrt(static_cast<double>(head_dim))));
  torch::Tensor k = heads(k_proj(x));
  torch::Tensor v = heads(v_proj(x));
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1));  // (B, H, T, T)
  torch::Tensor future = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool)).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  torch::Tensor probs = maybe_dropout(torch::softmax(scores, -1), dropout, is_training());
  torch::Tensor y = torch::matmul(probs, v);                    // (B, H, T, D)
  y = y.transpose(1, 2).contiguous().view({B, T, C});           // (B, H, T, D) -> (B, T, C)
  return out_proj(y);
}

OptDecoderLayerImpl::OptDecoderLayerImpl(const GptConfig& c) : activation(c.activation), dropout(c.dropout) {
  self_attn = register_module("self_attn", OptAttention(c));
  self_attn_layer_norm = register_module("self_attn_layer_norm", nn::LayerNorm(nn::LayerNormOptions({c.d_model})));
  fc1 = register_module("fc1", nn::Linear(c.d_model, c.d_ff));
  fc2 = register_module("fc2", nn::Linear(c.d_ff, c.d_model));
  final_layer_norm = register_module("final_layer_norm", nn::LayerNorm(nn::LayerNormOptions({c.d_model})));
}

torch::Tensor OptDecoderLayerImpl::forward(torch::Tensor x) {
  x = x + maybe_dropout(self_attn(self_attn_layer_norm(x)), dropout, is_training());
  torch::Tensor h = fc1(final_layer_norm(x));
  h = activation == "relu" ? torch::relu(h) : torch::gelu(h, "tanh");
  return x + maybe_dropout(fc2(h), dropout, is_training());
}

OptDecoderImpl::OptDecoderImpl(const GptConfig& c) : dropout(c.dropout) {
  embed_tokens = register_module("embed_tokens", nn::Embedding(c.vocab_size, c.d_model));
  embed_positions = register_module("embed_positions", nn::Embedding(c.max_seq_len + kOptPositionOffset, c.d_model));
  final_layer_norm = register_module("final_layer_norm", nn::LayerNorm(nn::LayerNormOptions({c.d_model})));
  layers = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) layers->push_back(OptDecoderLayer(c));
}

torch::Tensor OptDecoderImpl::forward(const torch::Tensor& tokens) {
  const int64_t T = tokens.size(1);
  const int64_t max_positions = embed_positions->weight.size(0) - kOptPositionOffset;
  if (T > max_positions) fail("sequence of ", T, " tokens is longer than the model's ", max_positions, " positions");
  torch::Tensor positions = torch::arange(kOptPositionOffset, T + kOptPositionOffset, torch::kLong);  // (T)
  torch::Tensor x = embed_tokens(tokens) + embed_positions(positions);  // (B, T, C)
  x = maybe_dropout(x, dropout, is_training());
  for (const auto& layer : *layers) x = layer->as<OptDecoderLayer>()->forward(x);
  return final_layer_norm(x);
}

OptModelImpl::OptModelImpl(const GptConfig& c) { decoder = register_module("decoder", OptDecoder(c)); }

GptImpl::GptImpl(const GptConfig& c) : config(c) { model = register_module("model", OptModel(c)); }

torch::Tensor GptImpl::forward(const torch::Tensor& tokens) {
  torch::Tensor h = model->decoder->forward(tokens);                 // (B, T, C)
  return torch::matmul(h, model->decoder->embed_tokens->weight.t());  // tied head: (B, T, V)
}

torch::Tensor GptImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets) {
  torch::Tensor logits = forward(tokens);
  return torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}),  // (B*T, V)
                                              targets.reshape({-1}));               // (B*T)
}

void init_gpt_weights(Gpt& gpt) {
  torch::NoGradGuard no_grad;
  for (auto& item : gpt->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    bool is_norm = name.find("layer_norm") != std::string::npos;
    if (is_norm) p.fill_(name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 ? 1.0 : 0.0);
    else if (p.dim() == 1) p.zero_();  // biases
    else p.normal_(0.0, 0.02);
  }
}

}  // namespace lofi::model
