// The shape of a causal language model, whichever architecture builds it. Plain values with
// Hugging Face meanings; each architecture (archs/*.cpp) maps its config.json keys onto these
// fields, and declare() names them for the run config's [model] section, so a field is declared
// here once and read, written and overridden everywhere by that one declaration.
#pragma once
#include <cstdint>
#include <string>
#include <variant>

#include "lofi/settings.h"

namespace lofi::model {

struct LmConfig {
  std::string arch = "opt";
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t d_model = 128;
  int64_t d_ff = 512;
  int64_t vocab_size = 256;
  int64_t max_seq_len = 128;
  std::string activation = "relu";
  double dropout = 0.0;
  double attention_dropout = 0.0;
  double embedding_dropout = 0.0;
  double layer_norm_eps = 1e-5;
  bool do_layer_norm_before = true;
  int64_t word_embed_proj_dim = 0;
  bool tie_word_embeddings = true;
  // Llama-class decoders (llama, qwen2, qwen3, mistral).
  int64_t n_kv_head = 0;
  int64_t head_dim = 0;
  double rope_theta = 10000.0;
  std::string rope_scaling = "default";
  double rope_factor = 1.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_positions = 8192;
  double rope_attention_factor = 0;
  double rope_beta_fast = 32;
  double rope_beta_slow = 1;
  double rope_mscale = 0;
  double rope_mscale_all_dim = 0;
  bool rope_truncate = true;
  std::string rope_short_factor;
  std::string rope_long_factor;
  double partial_rotary_factor = 1.0;
  bool attention_bias = false;
  bool attention_out_bias = false;
  bool mlp_bias = false;
  int64_t sliding_window = 0;
  bool qk_norm = false;
  // Gemma 2 and 3 (gemma2, gemma3_text).
  double query_pre_attn_scalar = 0;
  int64_t sliding_window_pattern = 0;
  double rope_local_theta = 0;
  // Gemma 2's soft-capping (gemma2; Gemma 3's config has the same keys): cap * tanh(x / cap); 0: none.
  double attn_logit_softcapping = 0;
  double final_logit_softcapping = 0;
  // SmolLM3 (smollm3).
  int64_t no_rope_interval = 0;
  // Granite's scalings (granite).
  double embedding_multiplier = 1.0;
  double residual_multiplier = 1.0;
  double attention_multiplier = 0;
  double logits_scaling = 1.0;
  // Mixtures of experts (mixtral, qwen2_moe, qwen3_moe).
  int64_t num_experts = 0;
  int64_t experts_per_token = 2;
  int64_t moe_d_ff = 0;
  bool norm_topk_prob = true;
  int64_t shared_expert_d_ff = 0;
  bool output_router_logits = false;
  double router_aux_loss_coef = 0.001;
  // gpt-oss (gpt_oss): a learned sink logit per attention head; clamped experts with biases.
  bool attention_sinks = false;
  double swiglu_limit = 0;
  double swiglu_alpha = 1.702;

  void declare(Settings& s) {
    s(arch, "arch", "the architecture (model/archs/): \"opt\", \"gpt2\", \"llama\", \"qwen2\", \"qwen3\", \"mistral\",\n"
                    "\"phi3\", \"smollm3\", \"gemma2\", \"gemma3_text\", \"mixtral\", \"qwen2_moe\", \"qwen3_moe\", \"gpt_oss\", \"olmo2\", \"olmoe\", \"granite\"; or an image classifier (\"vit\"), which ignores the language-model shape keys");
    s(n_layer, "n_layer", "decoder blocks, e.g. 12 for OPT-125M");
    s(n_head, "n_head", "attention heads, e.g. 12");
    s(d_model, "d_model", "residual width, e.g. 768");
    s(d_ff, "d_ff", "MLP hidden width, e.g. 3072");
    s(vocab_size, "vocab_size", "token ids must lie below this, e.g. 50272");
    s(max_seq_len, "max_seq_len", "positions the model is trained for, e.g. 2048");
    s(activation, "activation", "\"relu\", \"gelu\" (tanh approximation), \"gelu_erf\" (exact) or \"silu\"");
    s(dropout, "dropout", "on residual branches (OPT dropout, GPT-2 resid_pdrop)").in(0, 1);
    s(attention_dropout, "attention_dropout", "on attention probabilities (attention_dropout, attn_pdrop); in a run config < 0: as dropout").below(1);
    s(embedding_dropout, "embedding_dropout", "on token + position embeddings (GPT-2 embd_pdrop; OPT has none); in a run config < 0: as dropout").below(1);
    s(layer_norm_eps, "layer_norm_eps", "LayerNorm / RMSNorm epsilon (GPT-2 layer_norm_epsilon, Llama rms_norm_eps)");
    s(do_layer_norm_before, "do_layer_norm_before", "OPT: false is opt-350m's post-LayerNorm (no final norm)");
    s(word_embed_proj_dim, "word_embed_proj_dim",
      "OPT: token embedding width when it differs from d_model (opt-350m: 512, with project_in/out); 0: d_model");
    s(tie_word_embeddings, "tie_word_embeddings", "the output head is the token embedding; false: its own lm_head.weight");
    s(n_kv_head, "n_kv_head", "grouped-query attention's key/value heads (num_key_value_heads); 0: n_head");
    s(head_dim, "head_dim", "width of one head; 0: d_model / n_head");
    s(rope_theta, "rope_theta", "rotary embedding base");
    s(rope_scaling, "rope_scaling",
      "\"default\" (none), \"linear\", \"llama3\" (Llama 3.1's), \"yarn\" (Qwen's long context, DeepSeek's),\n"
      "\"longrope\" (Phi-3.5, Phi-4-mini) or \"dynamic\" (NTK; unscaled up to max_seq_len, as transformers computes it)");
    s(rope_factor, "rope_factor", "linear / llama3 / yarn / longrope / dynamic: how much longer the context is than trained");
    s(rope_low_freq_factor, "rope_low_freq_factor", "llama3");
    s(rope_high_freq_factor, "rope_high_freq_factor", "llama3");
    s(rope_original_max_positions, "rope_original_max_positions", "llama3 / yarn / longrope: the pretraining context");
    s(rope_attention_factor, "rope_attention_factor",
      "yarn / longrope: cos and sin scaled by this; 0: from rope_factor (and rope_mscale), as transformers derives it").at_least(0);
    s(rope_beta_fast, "rope_beta_fast", "yarn: rotations above which frequencies are kept (extrapolated)").above(0);
    s(rope_beta_slow, "rope_beta_slow", "yarn: rotations below which frequencies are divided by rope_factor").above(0);
    s(rope_mscale, "rope_mscale", "yarn: with rope_mscale_all_dim, the attention factor's numerator (DeepSeek's); 0: none").at_least(0);
    s(rope_mscale_all_dim, "rope_mscale_all_dim", "yarn: the attention factor's denominator (DeepSeek's); 0: none").at_least(0);
    s(rope_truncate, "rope_truncate", "yarn: the correction range rounded outwards to whole dimensions (false: gpt-oss)");
    s(rope_short_factor, "rope_short_factor",
      "longrope: one divisor per rotated frequency (a list of numbers), for sequences up to rope_original_max_positions");
    s(rope_long_factor, "rope_long_factor", "longrope: the same for longer sequences");
    s(partial_rotary_factor, "partial_rotary_factor",
      "the share of each head's features that rotates, from the front (Phi-4-mini: 0.75; phi3 only); 1: all").above(0).at_most(1);
    s(attention_bias, "attention_bias", "biases on the q/k/v projections (Qwen2: true)");
    s(attention_out_bias, "attention_out_bias", "a bias on the output projection (Llama's attention_bias sets both)");
    s(mlp_bias, "mlp_bias", "biases in the SwiGLU MLP");
    s(sliding_window, "sliding_window", "Mistral: each token attends to at most this many; 0: all before it");
    s(qk_norm, "qk_norm", "an RMSNorm over each query and key head before the rotation (Qwen3, Gemma 3: true)");
    s(query_pre_attn_scalar, "query_pre_attn_scalar", "Gemma 2 and 3: attention scores scaled by this to the power -1/2; 0: head_dim");
    s(sliding_window_pattern, "sliding_window_pattern",
      "Gemma 2 and 3: every Nth layer attends over the whole sequence, the others over sliding_window; 0: every layer alike");
    s(rope_local_theta, "rope_local_theta", "Gemma 3: rotary base of the sliding-window layers (unscaled); 0: rope_theta");
    s(attn_logit_softcapping, "attn_logit_softcapping",
      "Gemma 2: each attention score soft-capped as cap * tanh(score / cap) before the mask and softmax; 0: none").at_least(0);
    s(final_logit_softcapping, "final_logit_softcapping", "Gemma 2: each logit soft-capped as cap * tanh(logit / cap); 0: none")
        .at_least(0);
    s(no_rope_interval, "no_rope_interval",
      "SmolLM3: every Nth layer attends without rotary embeddings (NoPE), the others with; 0: every layer rotates");
    s(embedding_multiplier, "embedding_multiplier", "Granite: token embeddings times this").above(0);
    s(residual_multiplier, "residual_multiplier", "Granite: the attention's and the MLP's outputs times this before each residual add").above(0);
    s(attention_multiplier, "attention_multiplier", "Granite: attention scores times this; 0: head_dim^-1/2 (or query_pre_attn_scalar's)").at_least(0);
    s(logits_scaling, "logits_scaling", "Granite: logits divided by this").above(0);
    s(num_experts, "num_experts",
      "mixtral, qwen2_moe, qwen3_moe, gpt_oss: experts in each block's MLP, each token routed to experts_per_token of them; 0: a dense MLP").at_least(0);
    s(experts_per_token, "experts_per_token", "experts each token is routed to (num_experts_per_tok)").at_least(1);
    s(moe_d_ff, "moe_d_ff", "each expert's hidden width (Qwen3-MoE's moe_intermediate_size); 0: d_ff").at_least(0);
    s(norm_topk_prob, "norm_topk_prob", "the chosen experts' router probabilities rescaled to sum to 1 (Mixtral: always)");
    s(shared_expert_d_ff, "shared_expert_d_ff",
      "qwen2_moe: the hidden width of an expert every token takes beside its routed ones, weighted by a sigmoid gate "
      "(shared_expert_intermediate_size); 0: none").at_least(0);
    s(output_router_logits, "output_router_logits",
      "mixtures of experts: training adds the routers' load-balancing loss (transformers' load_balancing_loss_func) "
      "times router_aux_loss_coef to the language-modelling loss");
    s(router_aux_loss_coef, "router_aux_loss_coef", "the load-balancing loss's weight, where output_router_logits").at_least(0);
    s(attention_sinks, "attention_sinks",
      "gpt-oss: each head has a learned logit (self_attn.sinks) that joins every query's softmax and attends to nothing");
    s(swiglu_limit, "swiglu_limit",
      "gpt-oss: each expert's gate clamped to at most this and its up projection to [-limit, limit]; 0: no experts of that kind")
        .at_least(0);
    s(swiglu_alpha, "swiglu_alpha", "gpt-oss: an expert's activation is gate * sigmoid(alpha * gate) * (up + 1)").above(0);
  }

  int64_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  // About how many parameters this shape has (every architecture's blocks as the largest of them
  // would be: attention with its projections, a gated MLP, an untied head, learned positions),
  // never fewer than it has; in double, so absurd sizes do not overflow.
  double parameter_bound() const;
  // The same bound for the parameters outside the decoder blocks (embeddings, positions, head,
  // projections): what a model built in pieces makes whole at once (model/deferred_weights.h).
  double outside_blocks_bound() const;
  int64_t head_width() const { return head_dim > 0 ? head_dim : d_model / n_head; }
  int64_t expert_width() const { return moe_d_ff > 0 ? moe_d_ff : d_ff; }
  // Features of a head that rotate: head_width() * partial_rotary_factor, rounded down as
  // transformers rounds it (int(head_dim * partial_rotary_factor)).
  int64_t rotary_width() const { return static_cast<int64_t>(static_cast<double>(head_width()) * partial_rotary_factor); }
  // How many tokens (itself included) block LAYER's attention sees; 0: all before it.
  int64_t layer_window(int64_t layer) const;
  // Whether block LAYER rotates its queries and keys (all but SmolLM3's NoPE layers).
  bool layer_rotates(int64_t layer) const;
};

// A field of LmConfig by member pointer, typed (the architectures' config.json tables use it).
using LmField = std::variant<int64_t LmConfig::*, double LmConfig::*, bool LmConfig::*, std::string LmConfig::*>;

}  // namespace lofi::model
