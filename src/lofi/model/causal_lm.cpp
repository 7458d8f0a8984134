#include "lofi/model/causal_lm.h"

#include <xxhash.h>

#include <cstdio>
#include <set>

#include "lofi/error.h"
#include "lofi/io/process.h"
#include "lofi/kernels/cross_entropy.h"
#include "lofi/kernels/fp32_products.h"
#include "lofi/model/arch.h"
#include "lofi/model/blocks.h"
#include "lofi/model/router_stats.h"
#include "lofi/model/seeded_init.h"
#include "lofi/seed.h"
#include "lofi/strings.h"

namespace lofi::model {

torch::Tensor CausalLmImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets, const Packing& packing,
                                 const torch::Tensor& kept) {
  // A mixture of experts' load-balancing loss while training (router_stats.h): over the tokens
  // KEPT (all where undefined), as transformers counts those its attention mask keeps.
  const bool balance = config.output_router_logits && config.num_experts > 0 && is_training() && torch::GradMode::is_enabled();
  RouterStats routed;
  if (kept.defined()) routed.counted = kept.reshape({-1}).to(torch::kFloat);  // (B, T) -> (B*T)
  RouterStatsScope scope(balance ? &routed : router_stats());
  const torch::Tensor h = hidden(tokens, packing);
  const torch::Tensor lm = kernels::linear_cross_entropy(h.reshape({-1, h.size(-1)}), head_weight(),  // (B*T, E), (V, E)
                                                         targets.reshape({-1}),                      // (B*T)
                                                         /*chunk=*/0, /*group=*/0, config.final_logit_softcapping);
  return balance ? lm + config.router_aux_loss_coef * load_balancing_loss(routed) : lm;
}

torch::Tensor CausalLmImpl::head(const torch::Tensor& h) const {
  const torch::Tensor logits = kernels::linear(h, head_weight());  // (B, T, E) -> (B, T, V), in fp32 products where this CPU's are slow
  const double cap = config.final_logit_softcapping;                // Gemma 2's, in the logits' dtype as transformers takes it
  return cap > 0 ? torch::tanh(logits / cap) * cap : logits;
}

OutputHeadImpl::OutputHeadImpl(int64_t in, int64_t out) {
  weight = register_parameter("weight", torch::empty({out, in}, parameter_options()));
}

void CausalLmImpl::register_head(int64_t embedding_width) {
  if (config.tie_word_embeddings) return;
  lm_head = register_module("lm_head", OutputHead(embedding_width, config.vocab_size));
}

std::vector<std::string> tied_copies(const CausalLmImpl& model) {
  if (model.lm_head) return {};
  return {"lm_head.weight"};
}

void check_lm_config(const LmConfig& c, const std::string& source) {
  auto need = [&](bool ok, const auto&... why) {
    if (!ok) fail(source, ": ", why...);
  };
  const LmArch& arch = lm_arch(c.arch, source + ".arch");
  need(c.n_layer >= 1, "n_layer must be >= 1, found ", c.n_layer);
  need(c.d_model >= 1, "d_model must be >= 1, found ", c.d_model);
  need(c.n_head >= 1 && (c.head_dim > 0 || c.d_model % c.n_head == 0), "d_model (", c.d_model,
       ") must be divisible by n_head (", c.n_head, ")");
  need(c.d_ff >= 1 && c.vocab_size >= 2 && c.max_seq_len >= 1, "d_ff, vocab_size and max_seq_len must be positive");
  need(is_activation(c.activation), "activation must be ", activation_list(), ", found \"", c.activation, "\"");
  for (double p : {c.dropout, c.attention_dropout, c.embedding_dropout})
    need(p >= 0 && p < 1, "dropout rates must be in [0, 1), found ", p);
  need(c.layer_norm_eps > 0, "layer_norm_eps must be > 0");
  need(c.word_embed_proj_dim >= 0, "word_embed_proj_dim must be >= 0 (0: d_model)");
  need(c.n_kv_head >= 0 && c.head_dim >= 0 && c.sliding_window >= 0, "n_kv_head, head_dim and sliding_window must be >= 0");
  need(c.n_head % c.kv_heads() == 0, "n_head (", c.n_head, ") must be a multiple of n_kv_head (", c.kv_heads(),
       "): each key/value head serves n_head / n_kv_head query heads");
  arch.check(c, source);
}

namespace {
std::string three_digits(double v) {  // 1.24e+09, 42.2
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g", v);
  return text;
}
}  // namespace

CausalLm make_causal_lm(const LmConfig& config) {
  check_lm_config(config, "model");
  // Before a byte is allocated: a shape whose fp32 weights alone exceed this host's memory (a
  // damaged config.json, a typo in a size) is refused by its sizes, not found by the allocator.
  // Built in pieces (model/deferred_weights.h), only the parameters outside the blocks are made
  // whole at once (the memory plan judges the rest).
  const bool pieces = MetaParameters::active();
  const double count = pieces ? config.outside_blocks_bound() : config.parameter_bound(), bytes = 4 * count;
  const int64_t available = io::available_memory_bytes();
  if (available > 0 && bytes > static_cast<double>(available))
    fail("model: this shape has up to ", three_digits(count), " parameters", pieces ? " outside its decoder blocks" : "", ", ",
         three_digits(bytes / 1e9), " GB in fp32, more than the ", three_digits(static_cast<double>(available) / 1e9),
         " GB this host has available (n_layer ",
         config.n_layer, ", d_model ", config.d_model, ", d_ff ", config.d_ff, ", vocab_size ", config.vocab_size,
         ", max_seq_len ", config.max_seq_len, "); check those sizes");
  return lm_arch(config.arch).make(config);
}

void init_causal_lm_weights(CausalLmImpl& model, uint64_t seed, DeferredWeights* deferred) {
  torch::NoGradGuard no_grad;
  std::set<const void*> norm_weights, norm_biases;
  for (const auto& m : model.modules(/*include_self=*/false))
    if (auto* ln = m->as<torch::nn::LayerNorm>()) {
      if (ln->weight.defined()) norm_weights.insert(ln->weight.unsafeGetTensorImpl());
      if (ln->bias.defined()) norm_biases.insert(ln->bias.unsafeGetTensorImpl());
    } else if (auto* rms = m->as<RmsNorm>()) {
      if (!rms->unit_offset) norm_weights.insert(rms->weight.unsafeGetTensorImpl());  // Gemma's start at 0, as 1-D tensors do
    }
  for (auto& item : model.named_parameters()) {
    torch::Tensor& p = item.value();
    const void* impl = p.unsafeGetTensorImpl();
    // Biases, 1-D tensors (gpt-oss's sinks too) and gpt-oss's experts' 2-D biases start at zero, as transformers starts them.
    const bool ones = norm_weights.count(impl) > 0,
               zeros = !ones && (norm_biases.count(impl) || p.dim() == 1 || ends_with(item.key(), "_bias"));
    const uint64_t stream = seed::parameter(seed, XXH3_64bits(item.key().data(), item.key().size()));
    DeferredWeights::Fill value = [ones, zeros, stream](const torch::Tensor& into) {
      if (ones) into.fill_(1.0);
      else if (zeros) into.zero_();
      else seeded_normal_(into, 0.0, 0.02, stream);
    };
    if (p.is_meta()) {
      if (!deferred) fail("internal: parameter '", item.key(), "' has no memory to initialise");
      deferred->defer(p, item.key(), std::move(value));
    } else {
      value(p);
    }
  }
}

}  // namespace lofi::model
