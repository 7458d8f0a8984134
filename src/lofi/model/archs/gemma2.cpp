// Gemma 2 (Gemma2ForCausalLM, model_type "gemma2": Gemma 2 2B, 9B and 27B): Gemma 3's text
// modules (model/gemma3.h) without its query/key norms, every other layer attending over
// sliding_window tokens (the first among them), all rotated alike at rope_theta, and the two
// soft-caps: attention scores to attn_logit_softcapping and logits to final_logit_softcapping,
// each as cap * tanh(x / cap). The soft-capped scores take attention's unfused path
// (model/blocks.h), as transformers' eager attention, the one it trains Gemma 2 with. config.json
// as transformers 4.4x writes it (rope_theta, no layer_types) and as 5 does (rope_parameters,
// layer_types); both are written.
#include "lofi/model/arch.h"
#include "lofi/model/gemma3.h"
#include "lofi/model/gemma_arch.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class Gemma2Arch : public LmArch {
 public:
  std::string name() const override { return "gemma2"; }
  std::string hf_class() const override { return "Gemma2ForCausalLM"; }
  CausalLm make(const LmConfig& c) const override { return std::make_shared<Gemma3ForCausalLMImpl>(c); }
  std::string base_prefix() const override { return "model."; }

  std::vector<HfKey> hf_keys() const override {
    return {{"vocab_size", &LmConfig::vocab_size, 256000},
            {"hidden_size", &LmConfig::d_model, 2304},
            {"intermediate_size", &LmConfig::d_ff, 9216},
            {"num_hidden_layers", &LmConfig::n_layer, 26},
            {"num_attention_heads", &LmConfig::n_head, 8},
            {"max_position_embeddings", &LmConfig::max_seq_len, 8192},
            {"rms_norm_eps", &LmConfig::layer_norm_eps, 1e-6},
            {"attention_dropout", &LmConfig::attention_dropout, 0.0},
            {"tie_word_embeddings", &LmConfig::tie_word_embeddings, true}};
  }

  void read_hf(const HfKeys& keys, LmConfig& c) const override {
    read_gemma_keys(keys, c, /*query_pre_attn_scalar=*/256, /*softcap_attention=*/50.0, /*softcap_logits=*/30.0, /*default_pattern=*/2);
    c.qk_norm = false;
    const HfKeys rope = keys.nested(keys.has("rope_scaling") ? "rope_scaling" : "rope_parameters");
    read_rope_object(keys, rope, keys.number("rope_theta", 10000.0), c);
    if (c.rope_scaling != "default")
      rope.unsupported(rope.has("rope_type") ? "rope_type" : "type",
                       "lofi rotates Gemma 2's layers unscaled, as its published models do");
  }

  void write_hf(const LmConfig& c, nlohmann::ordered_json& out) const override {
    write_gemma_keys(c, out);
    // Both spellings, so transformers 4 (rope_theta) and 5 (rope_parameters) read it.
    out["rope_parameters"] = rope_object(c);
    out["rope_theta"] = c.rope_theta;
  }

  void check(const LmConfig& c, const std::string& source) const override {
    check_gemma(c, source, /*qk_norm=*/false);
    if (c.rope_scaling != "default" || c.rope_local_theta != 0)
      fail(source, ": arch \"gemma2\" rotates every layer alike and unscaled: set rope_scaling = \"default\" and rope_local_theta = 0");
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(gemma2, lofi::model::Gemma2Arch)
