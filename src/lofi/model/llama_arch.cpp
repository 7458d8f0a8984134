#include "lofi/model/llama_arch.h"

#include <algorithm>

#include "lofi/error.h"
#include "lofi/model/llama.h"
#include "lofi/model/rotary.h"

namespace lofi::model {

CausalLm LlamaClassArch::make(const LmConfig& c) const { return std::make_shared<LlamaForCausalLMImpl>(c); }

std::vector<HfKey> LlamaClassArch::hf_keys() const {
  return {{"vocab_size", &LmConfig::vocab_size, default_vocab_size()},
          {"hidden_size", &LmConfig::d_model, 4096},
          {"intermediate_size", &LmConfig::d_ff, default_d_ff()},
          {"num_hidden_layers", &LmConfig::n_layer, 32},
          {"num_attention_heads", &LmConfig::n_head, 32},
          {"max_position_embeddings", &LmConfig::max_seq_len, default_max_positions()},
          {"rms_norm_eps", &LmConfig::layer_norm_eps, 1e-6},
          {"attention_dropout", &LmConfig::attention_dropout, 0.0},
          {"tie_word_embeddings", &LmConfig::tie_word_embeddings, false}};
}

void read_llama_heads(const HfKeys& keys, LmConfig& c, int64_t default_kv_heads, int64_t default_head_dim) {
  c.dropout = c.embedding_dropout = 0.0;  // these models have no residual or embedding dropout
  c.n_kv_head = keys.size("num_key_value_heads", default_kv_heads > 0 ? default_kv_heads : c.n_head);
  if (c.n_kv_head <= 0 || c.n_head % c.n_kv_head != 0)
    keys.unsupported("num_key_value_heads", "it must divide num_attention_heads = " + std::to_string(c.n_head) +
                                                ": each key/value head serves the same number of query heads");
  if (c.n_kv_head == c.n_head) c.n_kv_head = 0;
  c.head_dim = keys.size("head_dim", default_head_dim);
  if (c.n_head > 0 && c.head_dim * c.n_head == c.d_model) c.head_dim = 0;
  if (keys.integer("pretraining_tp", 1) != 1)
    keys.unsupported("pretraining_tp", "lofi computes each projection whole; the model is the same with pretraining_tp = 1");
}

void read_rope_object(const HfKeys& keys, const HfKeys& rope, double theta_fallback, LmConfig& c, bool partial_rotation) {
  c.rope_theta = rope.number("rope_theta", theta_fallback);
  const std::string type_key = rope.has("rope_type") ? "rope_type" : "type";
  c.rope_scaling = rope.string(type_key, "default");
  // transformers: a top-level original_max_position_embeddings (Phi-3's) wins over the object's;
  // without either, max_position_embeddings.
  auto original = [&] {
    return keys.has("original_max_position_embeddings") ? keys.size("original_max_position_embeddings", 0)
                                                        : rope.size("original_max_position_embeddings", c.max_seq_len);
  };
  // yarn's and longrope's factor: max_position_embeddings / the original context where none is given.
  auto stretch = [&] {
    return rope.has("factor") ? rope.number("factor", 1.0)
                              : static_cast<double>(c.max_seq_len) / static_cast<double>(c.rope_original_max_positions);
  };
  auto factors = [&](const char* key) {
    const nlohmann::json& list = rope.json().contains(key) ? rope.json()[key] : nlohmann::json();
    std::vector<double> values;
    for (const auto& v : list.is_array() ? list : nlohmann::json::array())
      if (v.is_number()) values.push_back(v.get<double>());
    if (!list.is_array() || values.size() != list.size() || values.empty())
      rope.unsupported(key, "longrope needs a list of numbers here, one per rotated frequency");
    return rope_factor_text(values);
  };
  if (c.rope_scaling == "linear" || c.rope_scaling == "dynamic") {
    c.rope_factor = rope.number("factor", 1.0);
  } else if (c.rope_scaling == "llama3") {
    c.rope_factor = rope.number("factor", 8.0);
    c.rope_low_freq_factor = rope.number("low_freq_factor", 1.0);
    c.rope_high_freq_factor = rope.number("high_freq_factor", 4.0);
    c.rope_original_max_positions = original();
  } else if (c.rope_scaling == "yarn" || c.rope_scaling == "longrope") {
    c.rope_original_max_positions = original();
    c.rope_factor = stretch();
    c.rope_attention_factor = rope.number("attention_factor", 0.0);
    if (c.rope_scaling == "yarn") {
      // transformers reads these with `or`: null and 0 take the default too.
      c.rope_beta_fast = rope.number("beta_fast", 0.0) != 0 ? rope.number("beta_fast", 0.0) : 32.0;
      c.rope_beta_slow = rope.number("beta_slow", 0.0) != 0 ? rope.number("beta_slow", 0.0) : 1.0;
      c.rope_mscale = rope.number("mscale", 0.0);
      c.rope_mscale_all_dim = rope.number("mscale_all_dim", 0.0);
      c.rope_truncate = rope.boolean("truncate", true);
    } else {
      c.rope_short_factor = factors("short_factor");
      c.rope_long_factor = factors("long_factor");
    }
  } else if (c.rope_scaling != "default") {
    rope.unsupported(type_key, "lofi has \"default\", \"linear\", \"llama3\", \"yarn\", \"longrope\" and \"dynamic\"");
  }
  // transformers: the object's partial_rotary_factor, else the top-level key.
  const HfKeys& partial_keys = rope.has("partial_rotary_factor") ? rope : keys;
  c.partial_rotary_factor = partial_keys.number("partial_rotary_factor", 1.0);
  if (c.partial_rotary_factor != 1.0 && !partial_rotation)
    partial_keys.unsupported("partial_rotary_factor", "\"" + c.arch + "\" rotates whole heads, as transformers' model of it does");
  if (std::string why = rotary_problem(c); !why.empty()) rope.unsupported(type_key, why);
}

nlohmann::ordered_json rope_object(const LmConfig& c) {
  nlohmann::ordered_json rope{{"rope_type", c.rope_scaling}, {"rope_theta", c.rope_theta}};
  const std::string& kind = c.rope_scaling;
  if (kind == "linear" || kind == "llama3" || kind == "dynamic") rope["factor"] = c.rope_factor;
  if (kind == "llama3") {
    rope["low_freq_factor"] = c.rope_low_freq_factor;
    rope["high_freq_factor"] = c.rope_high_freq_factor;
  }
  if (kind == "llama3" || kind == "yarn" || kind == "longrope") rope["original_max_position_embeddings"] = c.rope_original_max_positions;
  if (kind == "yarn" || kind == "longrope") {
    // The factor as given; left out where transformers derives the same (max_position_embeddings / original).
    if (kind == "yarn" || c.rope_factor != static_cast<double>(c.max_seq_len) / static_cast<double>(c.rope_original_max_positions))
      rope["factor"] = c.rope_factor;
    if (c.rope_attention_factor > 0) rope["attention_factor"] = c.rope_attention_factor;
  }
  if (kind == "yarn") {
    if (c.rope_beta_fast != 32) rope["beta_fast"] = c.rope_beta_fast;
    if (c.rope_beta_slow != 1) rope["beta_slow"] = c.rope_beta_slow;
    if (c.rope_mscale > 0) rope["mscale"] = c.rope_mscale;
    if (c.rope_mscale_all_dim > 0) rope["mscale_all_dim"] = c.rope_mscale_all_dim;
    if (!c.rope_truncate) rope["truncate"] = false;
  }
  if (kind == "longrope") {
    rope["short_factor"] = rope_factor_list(c.rope_short_factor);
    rope["long_factor"] = rope_factor_list(c.rope_long_factor);
  }
  if (c.partial_rotary_factor != 1.0) rope["partial_rotary_factor"] = c.partial_rotary_factor;
  return rope;
}

void LlamaClassArch::read_hf(const HfKeys& keys, LmConfig& c) const {
  c.activation = activation_from_hf(keys, "hidden_act", "silu");
  read_llama_heads(keys, c, default_kv_heads(), default_head_dim());
  c.qk_norm = qk_norm();
  // Rotary settings: rope_scaling (hub checkpoints) wins over rope_parameters (transformers 5),
  // as transformers reads them; rope_theta inside the object wins over the top-level key.
  read_rope_object(keys, keys.nested(keys.has("rope_scaling") ? "rope_scaling" : "rope_parameters"),
                   keys.number("rope_theta", default_rope_theta()), c, partial_rotation());
  // transformers 5's attention kind per layer: one for every layer (whole sequence, or Mistral's
  // sliding_window in all of them) unless the architecture alternates (gpt-oss: read after its
  // window, which all-full layer_types set to none).
  if (!sliding_layers() && keys.has("layer_types"))
    for (const auto& kind : keys.json()["layer_types"])
      if (kind != "full_attention")
        keys.unsupported("layer_types", "lofi attends the same way in every layer; " + kind.dump() + " layers are not built");
  read_variant(keys, c);
  if (sliding_layers() && keys.has("layer_types")) c.sliding_window_pattern = layer_types_pattern(keys, c);
}

std::vector<HfKey> LlamaClassArch::hf_keys_with(const std::vector<std::pair<std::string, nlohmann::json>>& defaults) const {
  std::vector<HfKey> keys = LlamaClassArch::hf_keys();
  for (HfKey& key : keys)
    for (const auto& [name, value] : defaults)
      if (name == key.name) key.fallback = value;
  return keys;
}

int64_t layer_types_pattern(const HfKeys& keys, LmConfig& c) {
  const nlohmann::json& kinds = keys.json()["layer_types"];
  if (!kinds.is_array() || static_cast<int64_t>(kinds.size()) != c.n_layer)
    keys.unsupported("layer_types", "expected one kind per layer, " + std::to_string(c.n_layer) + " in all");
  std::vector<bool> full;
  for (const auto& kind : kinds) {
    if (kind != "full_attention" && kind != "sliding_attention")
      keys.unsupported("layer_types", "lofi builds \"full_attention\" and \"sliding_attention\" layers, not " + kind.dump());
    full.push_back(kind == "full_attention");
  }
  if (std::find(full.begin(), full.end(), false) == full.end()) {  // all full: no window
    c.sliding_window = 0;
    return 0;
  }
  return every_nth_layer(keys, "layer_types", full, "a full-attention layer (sliding-window layers between)");
}

int64_t every_nth_layer(const HfKeys& keys, const std::string& key, const std::vector<bool>& flags, const std::string& what) {
  int64_t first = -1;
  for (size_t i = 0; i < flags.size() && first < 0; ++i)
    if (flags[i]) first = static_cast<int64_t>(i);
  if (first < 0) return 0;
  const int64_t every = first + 1;
  for (size_t i = 0; i < flags.size(); ++i)
    if (flags[i] != ((static_cast<int64_t>(i) + 1) % every == 0))
      keys.unsupported(key, "lofi builds " + what + " every Nth layer; these layers follow no such N");
  return every;
}

void read_sliding_window(const HfKeys& keys, LmConfig& c, int64_t absent) {
  const bool null_window = keys.json().contains("sliding_window") && keys.json()["sliding_window"].is_null();
  c.sliding_window = null_window ? 0 : keys.integer("sliding_window", absent);
  if (c.sliding_window < 0) keys.unsupported("sliding_window", "a window is a positive number of tokens, or null");
}

nlohmann::ordered_json rope_scaling_object(const LmConfig& c) {
  if (c.rope_scaling == "default") return nullptr;
  nlohmann::ordered_json scaling = rope_object(c);
  scaling.erase("rope_theta");
  return scaling;
}

void LlamaClassArch::write_hf(const LmConfig& c, nlohmann::ordered_json& out) const {
  out["num_key_value_heads"] = c.kv_heads();
  out["head_dim"] = c.head_width();
  out["hidden_act"] = activation_to_hf(c.activation);
  const nlohmann::ordered_json rope = rope_object(c);
  // Both spellings, so transformers 4 (rope_theta, rope_scaling) and 5 (rope_parameters) read it.
  out["rope_parameters"] = rope;
  out["rope_theta"] = c.rope_theta;
  out["rope_scaling"] = rope_scaling_object(c);
  out["pretraining_tp"] = 1;
  write_variant(c, out);
}

void LlamaClassArch::read_router_settings(const HfKeys& keys, LmConfig& c) {
  c.output_router_logits = keys.boolean("output_router_logits", false);
  c.router_aux_loss_coef = keys.number("router_aux_loss_coef", 0.001);
  if (!(c.router_aux_loss_coef >= 0)) keys.unsupported("router_aux_loss_coef", "the load-balancing loss's weight is a number >= 0");
}

void LlamaClassArch::write_router_settings(const LmConfig& c, nlohmann::ordered_json& out) {
  out["output_router_logits"] = c.output_router_logits;
  out["router_aux_loss_coef"] = c.router_aux_loss_coef;
}

void LlamaClassArch::read_qwen_experts(const HfKeys& keys, LmConfig& c, int64_t default_experts, int64_t default_per_token,
                                       int64_t default_width) {
  // The hub's files say num_experts; transformers 5 writes num_local_experts.
  c.num_experts = keys.size(keys.has("num_experts") ? "num_experts" : "num_local_experts", default_experts);
  c.experts_per_token = keys.size("num_experts_per_tok", default_per_token);
  c.moe_d_ff = keys.size("moe_intermediate_size", default_width);
  c.norm_topk_prob = keys.boolean("norm_topk_prob", false);
  if (keys.integer("decoder_sparse_step", 1) != 1) keys.unsupported("decoder_sparse_step", "lofi builds a mixture of experts in every block");
  if (keys.has("mlp_only_layers") && !keys.json()["mlp_only_layers"].empty())
    keys.unsupported("mlp_only_layers", "lofi builds a mixture of experts in every block");
  read_router_settings(keys, c);
}

void LlamaClassArch::write_qwen_experts(const LmConfig& c, nlohmann::ordered_json& out) {
  out["num_experts"] = c.num_experts;  // both spellings: transformers 4 reads one, 5 the other
  out["num_local_experts"] = c.num_experts;
  out["num_experts_per_tok"] = c.experts_per_token;
  out["moe_intermediate_size"] = c.expert_width();
  out["norm_topk_prob"] = c.norm_topk_prob;
  out["decoder_sparse_step"] = 1;
  out["mlp_only_layers"] = nlohmann::ordered_json::array();
  write_router_settings(c, out);
}

void check_all_attention_biases_or_none(const LmConfig& c, const std::string& source) {
  if (c.attention_bias != c.attention_out_bias)
    fail(source, ": arch \"", c.arch, "\" has biases on all attention projections or none (attention_bias); attention_bias = ",
         c.attention_bias ? "true" : "false", " and attention_out_bias = ", c.attention_out_bias ? "true" : "false", " differ");
}

void check_llama_class(const LmConfig& c, const std::string& source) {
  auto need = [&](bool ok, const auto&... why) {
    if (!ok) fail(source, ": ", why...);
  };
  require_defaults(c, source, opt_variant_keys());
  need(c.dropout == 0 && c.embedding_dropout == 0, "arch \"", c.arch,
       "\" has no residual or embedding dropout; set dropout = 0 (attention_dropout applies)");
  need(c.rope_theta > 0, "rope_theta must be > 0, found ", c.rope_theta);
  need(c.rope_factor > 0, "rope_factor must be > 0, found ", c.rope_factor);
  need(c.rope_scaling != "llama3" || (c.rope_high_freq_factor > c.rope_low_freq_factor && c.rope_low_freq_factor > 0 &&
                                      c.rope_original_max_positions > 0),
       "rope_scaling = \"llama3\" needs 0 < rope_low_freq_factor < rope_high_freq_factor and rope_original_max_positions > 0");
  for (const char* kind : {"default", "linear", "llama3", "yarn", "longrope", "dynamic"})
    if (c.rope_scaling == kind) {
      const std::string why = rotary_problem(c);
      need(why.empty(), why);
      return;
    }
  fail(source, ": rope_scaling = \"", c.rope_scaling,
       "\" is not supported (lofi has \"default\", \"linear\", \"llama3\", \"yarn\", \"longrope\" and \"dynamic\")");
}

void LlamaClassArch::check(const LmConfig& c, const std::string& source) const {
  check_llama_class(c, source);
  const std::vector<std::string> own = variant_keys();
  auto others = [&own](const std::vector<std::string>& keys) {  // KEYS but this architecture's own
    std::vector<std::string> left;
    for (const std::string& key : keys)
      if (std::find(own.begin(), own.end(), key) == own.end()) left.push_back(key);
    return left;
  };
  require_defaults(c, source, others(gemma_variant_keys()));
  require_defaults(c, source, others(gpt_oss_keys()));
  if (!nope_layers()) require_defaults(c, source, {"no_rope_interval"});
  if (!partial_rotation()) require_defaults(c, source, {"partial_rotary_factor"});
  if (!multipliers()) require_defaults(c, source, granite_keys());
  if (!mixture_of_experts()) {
    require_defaults(c, source, moe_keys());
  } else {
    if (c.num_experts < 1 || c.experts_per_token > c.num_experts)
      fail(source, ": arch \"", c.arch, "\" routes each token to experts_per_token (", c.experts_per_token, ") of num_experts (",
           c.num_experts, "): it needs 1 <= experts_per_token <= num_experts");
    if (c.activation != "silu") fail(source, ": arch \"", c.arch, "\"'s experts are SwiGLU MLPs: set activation = \"silu\"");
  }
  if (c.qk_norm != qk_norm())
    fail(source, ": arch \"", c.arch, "\" has ", qk_norm() ? "" : "no ", "RMSNorm on each query and key head: set qk_norm = ",
         qk_norm() ? "true" : "false");
  check_variant(c, source);
}

}  // namespace lofi::model
