// Granite 3.x (GraniteForCausalLM, model_type "granite": granite-3.x-2b and -8b, base and
// instruct): Llama's modules with four scalings (LmConfig's Granite keys): token embeddings times
// embedding_multiplier, the attention's and the MLP's outputs times residual_multiplier before each
// residual add, attention scores times attention_multiplier (in place of head_dim^-1/2), and
// logits divided by logits_scaling.
#include <cmath>

#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class GraniteArch : public LlamaClassArch {
 public:
  std::string name() const override { return "granite"; }
  std::string hf_class() const override { return "GraniteForCausalLM"; }
  std::vector<HfKey> hf_keys() const override {  // GraniteConfig's defaults, its scalings among them
    std::vector<HfKey> keys = hf_keys_with({{"intermediate_size", 11008}});
    keys.push_back({"embedding_multiplier", &LmConfig::embedding_multiplier, 1.0});
    keys.push_back({"residual_multiplier", &LmConfig::residual_multiplier, 1.0});
    keys.push_back({"attention_multiplier", &LmConfig::attention_multiplier, 1.0});
    keys.push_back({"logits_scaling", &LmConfig::logits_scaling, 1.0});
    return keys;
  }

 protected:
  int64_t default_vocab_size() const override { return 32000; }
  int64_t default_d_ff() const override { return 11008; }
  int64_t default_kv_heads() const override { return 0; }
  int64_t default_max_positions() const override { return 2048; }
  bool multipliers() const override { return true; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", false);
    c.mlp_bias = keys.boolean("mlp_bias", false);
    for (const char* key : {"embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling"})
      if (!(keys.number(key, 1.0) > 0)) keys.unsupported(key, "a Granite scaling is a positive number");
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["attention_bias"] = c.attention_bias;
    out["mlp_bias"] = c.mlp_bias;
    // 0 in a run config is head_dim^-1/2, which transformers reads only as a number.
    if (c.attention_multiplier <= 0) out["attention_multiplier"] = 1.0 / std::sqrt(static_cast<double>(c.head_width()));
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    check_all_attention_biases_or_none(c, source);
    require_defaults(c, source, {"sliding_window"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(granite, lofi::model::GraniteArch)
