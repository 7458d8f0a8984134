// OLMo 2 (Olmo2ForCausalLM, model_type "olmo2": OLMo-2 1B, 7B, 13B and 32B): Llama's modules with
// the norms moved after the attention and the MLP (post_attention_layernorm and
// post_feedforward_layernorm, each before its residual add; no input_layernorm) and an RMSNorm over
// all query heads together and one over all key heads before the rotation (llama.h's
// LlamaLayout::post_norms and norms_over_heads). attention_bias puts biases on all four attention projections.
#include "lofi/model/llama.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class Olmo2Arch : public LlamaClassArch {
 public:
  std::string name() const override { return "olmo2"; }
  std::string hf_class() const override { return "Olmo2ForCausalLM"; }
  CausalLm make(const LmConfig& c) const override {
    LlamaLayout layout;
    layout.post_norms = layout.norms_over_heads = true;
    return std::make_shared<LlamaForCausalLMImpl>(c, layout);
  }
  std::vector<HfKey> hf_keys() const override {  // Olmo2Config's defaults
    return hf_keys_with({{"intermediate_size", 11008}, {"rms_norm_eps", 1e-5}});
  }

 protected:
  int64_t default_vocab_size() const override { return 50304; }
  int64_t default_d_ff() const override { return 11008; }
  int64_t default_kv_heads() const override { return 0; }
  int64_t default_max_positions() const override { return 2048; }
  bool qk_norm() const override { return true; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", false);
    c.mlp_bias = false;
    if (keys.has("clip_qkv")) keys.unsupported("clip_qkv", "lofi does not clip the projections; OLMo 2's published models set null");
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override { out["attention_bias"] = c.attention_bias; }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    check_all_attention_biases_or_none(c, source);
    require_defaults(c, source, {"mlp_bias", "sliding_window"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(olmo2, lofi::model::Olmo2Arch)
