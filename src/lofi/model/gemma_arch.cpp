#include "lofi/model/gemma_arch.h"

#include <algorithm>
#include <cmath>

#include "lofi/error.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

// A soft-capping key: a positive number; null: none (0); absent: ABSENT.
double read_softcap(const HfKeys& keys, const std::string& key, double absent) {
  if (keys.json().contains(key) && keys.json()[key].is_null()) return 0;
  if (!keys.has(key)) return absent;
  const double cap = keys.number(key, absent);
  if (!(cap > 0)) keys.unsupported(key, "a soft cap is a positive number, or null for none");
  return cap;
}

// A number written as an integer where it is one: transformers 5 checks the type.
nlohmann::ordered_json number_json(double x) {
  return x == std::floor(x) ? nlohmann::ordered_json(static_cast<int64_t>(x)) : nlohmann::ordered_json(x);
}

}  // namespace

void read_gemma_keys(const HfKeys& keys, LmConfig& c, double query_pre_attn_scalar, double softcap_attention,
                     double softcap_logits, int64_t default_pattern) {
  c.activation = activation_from_hf(keys, "hidden_activation", "gelu_pytorch_tanh");
  read_llama_heads(keys, c, /*default_kv_heads=*/4, /*default_head_dim=*/256);
  c.query_pre_attn_scalar = keys.number("query_pre_attn_scalar", query_pre_attn_scalar);
  c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", false);
  c.mlp_bias = false;
  c.attn_logit_softcapping = read_softcap(keys, "attn_logit_softcapping", softcap_attention);
  c.final_logit_softcapping = read_softcap(keys, "final_logit_softcapping", softcap_logits);
  keys.require_bool("use_bidirectional_attention", false, false, "lofi's language models attend causally");
  read_sliding_window(keys, c, /*absent=*/4096);  // null: every layer attends over the whole sequence
  c.sliding_window_pattern = keys.has("layer_types") ? layer_types_pattern(keys, c) : keys.size("sliding_window_pattern", default_pattern);
}

void write_gemma_keys(const LmConfig& c, nlohmann::ordered_json& out) {
  out["num_key_value_heads"] = c.kv_heads();
  out["head_dim"] = c.head_width();
  out["hidden_activation"] = c.activation == "gelu" ? "gelu_pytorch_tanh" : activation_to_hf(c.activation);
  out["attention_bias"] = c.attention_bias;
  out["query_pre_attn_scalar"] = number_json(c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : static_cast<double>(c.head_width()));
  out["sliding_window"] = c.sliding_window > 0 ? nlohmann::ordered_json(c.sliding_window) : nlohmann::ordered_json();
  out["sliding_window_pattern"] = c.sliding_window_pattern;
  nlohmann::ordered_json kinds = nlohmann::ordered_json::array();
  for (int64_t i = 0; i < c.n_layer; ++i) kinds.push_back(c.layer_window(i) > 0 ? "sliding_attention" : "full_attention");
  out["layer_types"] = kinds;
  auto cap = [](double x) { return x > 0 ? nlohmann::ordered_json(x) : nlohmann::ordered_json(); };
  out["final_logit_softcapping"] = cap(c.final_logit_softcapping);
  out["attn_logit_softcapping"] = cap(c.attn_logit_softcapping);
  out["use_bidirectional_attention"] = false;
}

void check_gemma(const LmConfig& c, const std::string& source, bool qk_norm) {
  check_llama_class(c, source);
  require_defaults(c, source, {"no_rope_interval", "partial_rotary_factor"});
  require_defaults(c, source, moe_keys());
  require_defaults(c, source, granite_keys());
  require_defaults(c, source, gpt_oss_keys());
  auto need = [&](bool ok, const auto&... why) {
    if (!ok) fail(source, ": ", why...);
  };
  need(c.qk_norm == qk_norm, "arch \"", c.arch, "\" has ", qk_norm ? "" : "no ", "RMSNorm on each query and key head: set qk_norm = ",
       qk_norm ? "true" : "false");
  check_all_attention_biases_or_none(c, source);
  need(!c.mlp_bias, "arch \"", c.arch, "\" has no MLP biases: set mlp_bias = false");
  need(c.query_pre_attn_scalar >= 0, "query_pre_attn_scalar must be >= 0 (0: head_dim), found ", c.query_pre_attn_scalar);
  need(c.sliding_window >= 0 && c.sliding_window_pattern >= 0, "sliding_window and sliding_window_pattern must be >= 0");
  need(c.rope_local_theta >= 0, "rope_local_theta must be >= 0 (0: rope_theta), found ", c.rope_local_theta);
}

}  // namespace lofi::model
