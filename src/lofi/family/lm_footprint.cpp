#include "lofi/family/lm_footprint.h"

#include <algorithm>
#include <cmath>

#include "lofi/error.h"
#include "lofi/family/adapters.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/model/causal_lm.h"
#include "lofi/model/lora.h"
#include "lofi/strings.h"
#include "lofi/text.h"

namespace lofi::family {
namespace {

struct Counts {
  int64_t trainable = 0, frozen = 0, largest = 0;
  int64_t block_trainable = 0;  // one block's
  bool gated = false;  // the Llama class's gate_proj (gate_up_proj fused)
  bool sandwiched = false;  // norms after the attention and the MLP too (Gemma 2 and 3)
  bool learned_positions = false;  // a table of model.max_seq_len rows (OPT, GPT-2)
};

// The parameters of C's model (with SPEC's adapters when given) on a one-block build with a small
// vocabulary and few positions, scaled to C's blocks, vocabulary and positions: the plan answers
// before anything of the model's size is allocated, whatever model.max_seq_len or vocab_size say.
Counts count_parameters(const model::LmConfig& c, const io::LoraSpec* spec) {
  model::LmConfig probe = c;
  probe.n_layer = 1;
  // A vocabulary size and a position count no other dimension has (every other one is at most
  // 3 x the widest), so their tensors are told apart by their shape. OPT's table has 2 more rows.
  const int64_t widest = std::max({c.d_model, c.d_ff, c.word_embed_proj_dim, c.n_head * c.head_width(),
                                   c.kv_heads() * c.head_width(), int64_t{2}});
  probe.max_seq_len = 4 * widest + 1;
  probe.vocab_size = 4 * widest + 7;
  // A mixture of experts: one expert built, counted num_experts times (with the router's rows), so
  // the plan of a 128-expert model does not build 128 of them.
  const bool experts = c.num_experts > 0;
  if (experts) probe.num_experts = 1, probe.experts_per_token = 1;
  auto real = [&](int64_t size) -> double {  // a probe dimension at C's size
    if (size == probe.vocab_size) return static_cast<double>(c.vocab_size);
    if (size == probe.max_seq_len || size == probe.max_seq_len + 2) return static_cast<double>(c.max_seq_len + (size - probe.max_seq_len));
    return static_cast<double>(size);
  };
  model::CausalLm lm = model::make_causal_lm(probe);
  if (spec) model::apply_lora(*lm, *spec, /*seed=*/0);
  Counts counts;
  for (const auto& item : lm->named_parameters()) {
    const torch::Tensor& p = item.value();
    double one = 1;  // this tensor's elements at the real vocabulary and positions
    for (int64_t d = 0; d < p.dim(); ++d) {
      one *= real(p.size(d));
      counts.learned_positions |= p.size(d) == probe.max_seq_len || p.size(d) == probe.max_seq_len + 2;
    }
    const double E = static_cast<double>(c.num_experts);
    // The router: a row (and gpt-oss: a bias) for each expert.
    if (experts && (ends_with(item.key(), ".gate.weight") || item.key().find(".router.") != std::string::npos)) one *= E;
    // An expert's tensor (experts.0.*), or gpt-oss's experts' 3-D ones (experts.gate_up_proj, ...): one expert's in the probe.
    const double copies = experts && item.key().find(".experts.") != std::string::npos ? E : 1;
    const bool in_block = item.key().find(".0.") != std::string::npos;  // the block's: one in each block
    const auto all = static_cast<int64_t>(one * copies * (in_block ? static_cast<double>(c.n_layer) : 1));
    (p.requires_grad() ? counts.trainable : counts.frozen) += all;
    if (in_block && p.requires_grad()) counts.block_trainable += static_cast<int64_t>(one * copies);
    // gpt-oss's experts are one tensor for all of them; the others' one tensor each.
    const bool stacked = copies > 1 && item.key().find(".experts.0.") == std::string::npos;
    if (p.requires_grad()) counts.largest = std::max(counts.largest, static_cast<int64_t>(one * (stacked ? copies : 1)));
    counts.gated |= experts || item.key().find("gate_proj") != std::string::npos || item.key().find("gate_up_proj") != std::string::npos;
    counts.sandwiched |= item.key().find("post_feedforward_layernorm") != std::string::npos;
  }
  return counts;
}

}  // namespace

train::ModelFootprint lm_footprint(const train::Config& config, int64_t micro_batch) {
  // The adapters the run trains: lora.*, or an adapter it continues (model.init), on that
  // adapter's base (as make_lm builds it). The probe has one block, so an adapter's targets are
  // taken by their own names (q_proj of every block: a bound where it adapts some blocks only).
  train::ModelConfig shape = config.model;
  std::optional<io::LoraSpec> spec;
  if (!config.model.init.empty() && io::is_lora_adapter(config.model.init)) {
    const io::LoraAdapter adapter = io::read_lora_adapter(config.model.init);
    spec = adapter.spec;
    for (auto& t : spec->target_modules) t = t.substr(t.find_last_of('.') + 1);
    shape.init = adapter_base(adapter);
    train::apply_hf_init(shape);
  } else if (config.lora.enabled()) {
    spec = config.lora.spec();
  }
  const model::LmConfig c = train::lm_config(shape);
  const Counts counts = count_parameters(c, spec ? &*spec : nullptr);

  train::ModelFootprint f;
  f.shape = cat(c.arch, ", ", c.n_layer, " layers, d_model ", c.d_model, ", d_ff ", c.d_ff, ", vocabulary ", c.vocab_size,
                counts.learned_positions ? cat(", ", c.max_seq_len, " positions") : "", spec ? cat(", LoRA rank ", spec->r) : "");
  f.trainable = counts.trainable, f.frozen = counts.frozen, f.largest_param = counts.largest;
  f.blocks = c.n_layer, f.block_trainable = counts.block_trainable;
  f.frozen_bytes = config.model.dtype == "bf16" ? 2 : 4;
  f.builds_in_pieces = !spec;  // a full fine-tune (LmTaskBase defers its blocks under a sharded start)

  // In doubles: a product of huge sizes must not wrap around.
  const double T = static_cast<double>(config.data.seq_len), N = static_cast<double>(micro_batch) * T;
  const double d = static_cast<double>(c.d_model), ff = static_cast<double>(c.d_ff), V = static_cast<double>(c.vocab_size);
  const double hd = static_cast<double>(c.head_width()), H = static_cast<double>(c.n_head), kv = static_cast<double>(c.kv_heads());
  const double e = config.train.precision == "bf16" ? 2 : 4;
  // The residual stream's bytes: the embedding's dtype (a bf16 base's, or bf16 weights between
  // updates), which a norm keeps for its backward (kernels/rms_norm.h; LayerNorm likewise).
  const double s = config.model.dtype == "bf16" || config.train.param_dtype == "bf16" ? 2 : 4;
  const bool relu = c.activation == "relu";
  const double B = static_cast<double>(micro_batch);
  double block = 2 * (s * N * d + e * N * d);                // two norms: their input, matmul's saved output
  block += e * N * hd * (H + 2 * kv) + e * N * H * hd;       // q, k, v, attention output
  if (c.qk_norm) block += e * N * hd * (H + kv);             // Qwen3, Gemma 3: q and k before their norms
  if (counts.sandwiched) block += 2 * e * N * d;             // Gemma 3: the attention's and MLP's outputs, normed
  block += 4 * B * H * T;                                    // its log-sum-exp
  if (!counts.gated) block += e * N * d;                     // OPT / GPT-2: the output's contiguous copy
  if (c.num_experts > 0) {
    // A mixture of experts: each token through experts_per_token SwiGLU experts, their gathered
    // inputs and weighted outputs kept, and the router's fp32 probabilities.
    const double K = static_cast<double>(c.experts_per_token), E = static_cast<double>(c.num_experts);
    // gpt-oss's clamped experts (model/gpt_oss_moe.h) keep 7 widths a row: gate and up side by side,
    // the clamped gate, its sigmoid, the gated product, up + 1, and their product.
    const double widths = c.swiglu_limit > 0 ? 7 : 3;
    block += widths * e * K * N * static_cast<double>(c.expert_width()) + 2 * e * K * N * d + 4 * N * E;
    // Qwen2-MoE's shared expert on every token, and its gated output.
    if (c.shared_expert_d_ff > 0) block += 3 * e * N * static_cast<double>(c.shared_expert_d_ff) + 2 * e * N * d;
  } else {
    block += counts.gated ? 3 * e * N * ff : (relu ? 1 : 2) * e * N * ff;
  }
  // Gemma 2's soft-capped scores take the unfused path (model/blocks.h), a layer's (B, H, T, T)
  // kept: the fp32 probabilities, their copy in the compute dtype (in fp32 the same tensor; the
  // backward's score-sized gradients take its place), and the tanh of the scores (for its gradient).
  const bool capped = c.attn_logit_softcapping > 0;
  if (capped) block += (2 * e + 4) * B * H * T * T;
  // gpt-oss's sinks go through the fused kernel as one more key (model/blocks.cpp): the kernel keeps
  // its own copies of q, k, v and the output, each a row and up to 8 features wider.
  else if (c.attention_sinks) block += e * N * (hd + 8) * (2 * H + 2 * kv);
  // Attention dropout takes the unfused path: scores, probabilities and the dropped ones, fp32.
  if (c.attention_dropout > 0) block += 12 * B * H * T * T;
  // Dropout elsewhere keeps its scaled fp32 mask: OPT and GPT-2 after attention and after the MLP.
  if (c.dropout > 0 && !counts.gated) block += 2 * 4 * N * d;
  const int64_t every = config.train.activation_checkpointing;
  const double checkpointed = every > 0 ? std::ceil(static_cast<double>(c.n_layer) / static_cast<double>(every)) : 0;
  f.block_activations = block;
  f.activations = (static_cast<double>(c.n_layer) - checkpointed) * block + checkpointed * s * N * d + s * N * d + e * N * d +
                  (c.embedding_dropout > 0 ? 4 * N * d : 0);  // final norm, embedding dropout's mask
  f.loss_head = 4 * N * d + 4 * V * d + 2 * std::min(4 * N * V, 256e6) + std::min(e * N * V, 512e6);
  f.weight_copies = config.train.precision == "bf16" ? 2 * static_cast<double>(f.trainable) : 0;
  return f;
}

}  // namespace lofi::family
