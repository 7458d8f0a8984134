#include "lofi/model/causal_lm.h"

#include <set>

#include "lofi/error.h"
#include "lofi/model/gpt2.h"
#include "lofi/model/opt.h"

namespace lofi::model {

torch::Tensor CausalLmImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets) {
  torch::Tensor logits = forward(tokens);
  return torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}),  // (B*T, V)
                                              targets.reshape({-1}));               // (B*T)
}

void check_lm_config(const LmConfig& c, const std::string& source) {
  auto need = [&](bool ok, const auto&... why) {
    if (!ok) fail(source, ": ", why...);
  };
  need(c.arch == "opt" || c.arch == "gpt2", "arch must be \"opt\" or \"gpt2\", found \"", c.arch, "\"");
  need(c.n_layer >= 1, "n_layer must be >= 1, found ", c.n_layer);
  need(c.n_head >= 1 && c.d_model % c.n_head == 0, "d_model (", c.d_model, ") must be divisible by n_head (", c.n_head, ")");
  need(c.d_ff >= 1 && c.vocab_size >= 2 && c.max_seq_len >= 1, "d_ff, vocab_size and max_seq_len must be positive");
  need(c.activation == "relu" || c.activation == "gelu" || c.activation == "gelu_erf",
       "activation must be \"relu\", \"gelu\" (tanh approximation) or \"gelu_erf\", found \"", c.activation, "\"");
  for (double p : {c.dropout, c.attention_dropout, c.embedding_dropout})
    need(p >= 0 && p < 1, "dropout rates must be in [0, 1), found ", p);
  need(c.layer_norm_eps > 0, "layer_norm_eps must be > 0");
  need(c.word_embed_proj_dim >= 0, "word_embed_proj_dim must be >= 0 (0: d_model)");
  need(c.arch == "opt" || (c.do_layer_norm_before && c.word_embed_proj_dim == 0),
       "do_layer_norm_before = false and word_embed_proj_dim are OPT variants; arch is \"", c.arch, "\"");
}

CausalLm make_causal_lm(const LmConfig& config) {
  check_lm_config(config, "model");
  if (config.arch == "gpt2") return std::make_shared<Gpt2LMHeadModelImpl>(config);
  return std::make_shared<OptForCausalLMImpl>(config);
}

void init_causal_lm_weights(CausalLmImpl& model) {
  torch::NoGradGuard no_grad;
  std::set<const void*> norm_weights, norm_biases;
  for (const auto& m : model.modules(/*include_self=*/false))
    if (auto* ln = m->as<torch::nn::LayerNorm>()) {
      if (ln->weight.defined()) norm_weights.insert(ln->weight.unsafeGetTensorImpl());
      if (ln->bias.defined()) norm_biases.insert(ln->bias.unsafeGetTensorImpl());
    }
  // In parameter order, so one seed gives one model.
  for (auto& p : model.parameters()) {
    const void* impl = p.unsafeGetTensorImpl();
    if (norm_weights.count(impl)) p.fill_(1.0);
    else if (norm_biases.count(impl) || p.dim() == 1) p.zero_();
    else p.normal_(0.0, 0.02);
  }
}

}  // namespace lofi::model
