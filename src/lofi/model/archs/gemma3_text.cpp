// Gemma 3's text decoder (Gemma3ForCausalLM, model_type "gemma3_text"): modules in
// model/gemma3.h. config.json as transformers 4.5x writes it (rope_theta, rope_local_base_freq,
// rope_scaling, sliding_window_pattern) and as transformers 5 does (rope_parameters per layer kind,
// layer_types); both are written. Bidirectional attention is refused; soft-capping is read as
// Gemma 2's (model/gemma_arch.h), though Gemma 3's published models set none.
#include "lofi/model/arch.h"
#include "lofi/model/gemma3.h"
#include "lofi/model/gemma_arch.h"
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
    // Gemma 3's published models set no soft-capping (null); its config takes Gemma 2's keys.
    read_gemma_keys(keys, c, /*query_pre_attn_scalar=*/256, /*softcap_attention=*/0, /*softcap_logits=*/0, /*default_pattern=*/6);
    c.qk_norm = true;
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
  }

  void write_hf(const LmConfig& c, nlohmann::ordered_json& out) const override {
    write_gemma_keys(c, out);
    const double local = c.rope_local_theta > 0 ? c.rope_local_theta : c.rope_theta;
    // Both spellings, so transformers 4 (top-level keys) and 5 (rope_parameters) read it.
    const nlohmann::ordered_json global = rope_object(c);
    out["rope_parameters"] = {{"full_attention", global}, {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", local}}}};
    out["rope_theta"] = c.rope_theta;
    out["rope_local_base_freq"] = local;
    out["rope_scaling"] = rope_scaling_object(c);
  }

  void check(const LmConfig& c, const std::string& source) const override { check_gemma(c, source, /*qk_norm=*/true); }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(gemma3_text, lofi::model::Gemma3TextArch)
