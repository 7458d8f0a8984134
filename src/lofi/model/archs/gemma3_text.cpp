// Gemma 3's text decoder (Gemma3ForCausalLM, model_type "gemma3_text"): modules in
// model/gemma3.h. config.json as transformers 4.5x writes it (rope_theta, rope_local_base_freq,
// rope_scaling, sliding_window_pattern) and as transformers 5 does (rope_parameters per layer kind,
// layer_types); both are written. Logit soft-capping and bidirectional attention are refused.
#include <algorithm>
#include <cmath>

#include "lofi/error.h"
#include "lofi/model/arch.h"
#include "lofi/model/gemma3.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class Gemma3TextArch : public LmArch {
 public:
  std::string name() const override { return "gemma3_text"; }
  std::string hf_class() const override { return "Gemma3ForCausalLM"; }
  CausalLm make(const LmConfig& c) const override { return std::make_shared<Gemma3ForCausalLMImpl>(c); }
  std::string base_prefix() const override { return "model."; }
  // Gemma 3 4B, 12B and 27B: this model inside, beside a SigLIP vision tower.
  std::vector<HfWrapper> hf_wrappers() const override { return {{"gemma3", "Gemma3ForConditionalGeneration"}}; }

  std::vector<HfKey> hf_keys() const override {
    return {{"vocab_size", &LmConfig::vocab_size, 262208},
            {"hidden_size", &LmConfig::d_model, 2304},
            {"intermediate_size", &LmConfig::d_ff, 9216},
            {"num_hidden_layers", &LmConfig::n_layer, 26},
            {"num_attention_heads", &LmConfig::n_head, 8},
            {"max_position_embeddings", &LmConfig::max_seq_len, 131072},
            {"rms_norm_eps", &LmConfig::layer_norm_eps, 1e-6},
            {"attention_dropout", &LmConfig::attention_dropout, 0.0},
            {"tie_word_embeddings", &LmConfig::tie_word_embeddings, true}};
  }

  void read_hf(const HfKeys& keys, LmConfig& c) const override {
    c.activation = activation_from_hf(keys, "hidden_activation", "gelu_pytorch_tanh");
    read_llama_heads(keys, c, /*default_kv_heads=*/4, /*default_head_dim=*/256);
    c.qk_norm = true;
    c.query_pre_attn_scalar = keys.number("query_pre_attn_scalar", 256);
    c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", false);
    c.mlp_bias = false;
    for (const char* cap : {"final_logit_softcapping", "attn_logit_softcapping"})
      if (keys.has(cap)) keys.unsupported(cap, "lofi does not soft-cap logits; Gemma 3's published models set null");
    keys.require_bool("use_bidirectional_attention", false, false, "lofi's language models attend causally");
    read_sliding_window(keys, c, /*absent=*/4096);  // null: every layer attends over the whole sequence
    // Rotation: transformers 5's rope_parameters per layer kind, else the hub's top-level keys.
    const HfKeys params = keys.nested("rope_parameters");
    if (params.has("full_attention") || params.has("sliding_attention")) {
      read_rope_object(keys, params.nested("full_attention"), 1e6, c);
      const HfKeys local = params.nested("sliding_attention");
      if (local.string("rope_type", "default") != "default")
        local.unsupported("rope_type", "lofi rotates the sliding-window layers unscaled, as Gemma 3's published models do");
      c.rope_local_theta = local.number("rope_theta", 10000.0);
    } else {
      read_rope_object(keys, keys.nested(keys.has("rope_scaling") ? "rope_scaling" : "rope_parameters"), keys.number("rope_theta", 1e6), c);
      c.rope_local_theta = keys.number("rope_local_base_freq", 10000.0);
    }
    c.sliding_window_pattern = keys.has("layer_types") ? pattern_of(keys, c) : keys.size("sliding_window_pattern", 6);
  }

  void write_hf(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["num_key_value_heads"] = c.kv_heads();
    out["head_dim"] = c.head_width();
    out["hidden_activation"] = c.activation == "gelu" ? "gelu_pytorch_tanh" : activation_to_hf(c.activation);
    out["attention_bias"] = c.attention_bias;
    // An integer where it is one: transformers 5 checks the type.
    const double scalar = c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : static_cast<double>(c.head_width());
    out["query_pre_attn_scalar"] = scalar == std::floor(scalar) ? nlohmann::ordered_json(static_cast<int64_t>(scalar))
                                                                : nlohmann::ordered_json(scalar);
    out["sliding_window"] = c.sliding_window > 0 ? nlohmann::ordered_json(c.sliding_window) : nlohmann::ordered_json();
    out["sliding_window_pattern"] = c.sliding_window_pattern;
    nlohmann::ordered_json kinds = nlohmann::ordered_json::array();
    for (int64_t i = 0; i < c.n_layer; ++i) kinds.push_back(c.layer_window(i) > 0 ? "sliding_attention" : "full_attention");
    out["layer_types"] = kinds;
    const double local = c.rope_local_theta > 0 ? c.rope_local_theta : c.rope_theta;
    // Both spellings, so transformers 4 (top-level keys) and 5 (rope_parameters) read it.
    const nlohmann::ordered_json global = rope_object(c);
    out["rope_parameters"] = {{"full_attention", global}, {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", local}}}};
    out["rope_theta"] = c.rope_theta;
    out["rope_local_base_freq"] = local;
    out["rope_scaling"] = rope_scaling_object(c);
    out["final_logit_softcapping"] = nullptr;
    out["attn_logit_softcapping"] = nullptr;
    out["use_bidirectional_attention"] = false;
  }

  void check(const LmConfig& c, const std::string& source) const override {
    check_llama_class(c, source);
    require_defaults(c, source, {"no_rope_interval", "partial_rotary_factor"});
    require_defaults(c, source, moe_keys());
    require_defaults(c, source, granite_keys());
    auto need = [&](bool ok, const auto&... why) {
      if (!ok) fail(source, ": ", why...);
    };
    need(c.qk_norm, "arch \"gemma3_text\" has RMSNorm on each query and key head: set qk_norm = true");
    check_all_attention_biases_or_none(c, source);
    need(!c.mlp_bias, "arch \"gemma3_text\" has no MLP biases: set mlp_bias = false");
    need(c.query_pre_attn_scalar >= 0, "query_pre_attn_scalar must be >= 0 (0: head_dim), found ", c.query_pre_attn_scalar);
    need(c.sliding_window >= 0 && c.sliding_window_pattern >= 0, "sliding_window and sliding_window_pattern must be >= 0");
    need(c.rope_local_theta >= 0, "rope_local_theta must be >= 0 (0: rope_theta), found ", c.rope_local_theta);
  }

 private:
  // layer_types as sliding_window_pattern: every Nth layer "full_attention", the others
  // "sliding_attention"; 0 when all are one kind (all full: no window).
  static int64_t pattern_of(const HfKeys& keys, LmConfig& c) {
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
    return every_nth_layer(keys, "layer_types", full, "a full-attention layer (sliding-window layers between: Gemma 3's pattern)");
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(gemma3_text, lofi::model::Gemma3TextArch)
