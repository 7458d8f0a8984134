// SmolLM3 (SmolLM3ForCausalLM, model_type "smollm3"): Llama's modules, with every
// no_rope_layer_interval-th layer attending without rotary embeddings (NoPE; LmConfig::
// no_rope_interval), grouped-query attention, a tied head and rope_theta 2e6 by default. config.json
// gives the layers as a list (no_rope_layers: 1 rotates, 0 does not), which lofi reads when it
// follows such an interval and refuses by name otherwise. Its sliding window (use_sliding_window)
// is refused, as Qwen2's is.
#include <string>

#include "lofi/error.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class SmolLm3Arch : public LlamaClassArch {
 public:
  std::string name() const override { return "smollm3"; }
  std::string hf_class() const override { return "SmolLM3ForCausalLM"; }
  std::vector<HfKey> hf_keys() const override {  // SmolLM3Config's defaults
    return hf_keys_with({{"hidden_size", 2048}, {"num_hidden_layers", 36}, {"num_attention_heads", 16}, {"tie_word_embeddings", true}});
  }

 protected:
  int64_t default_vocab_size() const override { return 128256; }
  int64_t default_d_ff() const override { return 11008; }
  int64_t default_kv_heads() const override { return 4; }
  int64_t default_max_positions() const override { return 32768; }
  double default_rope_theta() const override { return 2e6; }
  bool nope_layers() const override { return true; }

  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    keys.require_bool("use_sliding_window", false, false, "lofi attends over the whole sequence in every layer of this class");
    c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", false);
    c.mlp_bias = keys.boolean("mlp_bias", false);
    c.no_rope_interval = keys.has("no_rope_layers") ? interval_of(keys, c) : keys.size("no_rope_layer_interval", 4);
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (int64_t i = 0; i < c.n_layer; ++i) layers.push_back(c.layer_rotates(i) ? 1 : 0);
    out["no_rope_layers"] = layers;
    out["no_rope_layer_interval"] = c.no_rope_interval;
    out["use_sliding_window"] = false;
    out["sliding_window"] = nullptr;
    out["attention_bias"] = c.attention_bias;
    out["mlp_bias"] = c.mlp_bias;
    // SmolLM3Config's default pad_token_id (128004) is a row a smaller vocabulary lacks.
    if (!out.contains("pad_token_id")) out["pad_token_id"] = nullptr;
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    check_all_attention_biases_or_none(c, source);
    require_defaults(c, source, {"sliding_window"});
    if (c.no_rope_interval < 0) fail(source, ": no_rope_interval must be >= 0 (0: every layer rotates), found ", c.no_rope_interval);
  }

 private:
  // no_rope_layers (1: the layer rotates) as an interval N: every Nth layer 0, the others 1; 0 when all rotate.
  static int64_t interval_of(const HfKeys& keys, const LmConfig& c) {
    const nlohmann::json& layers = keys.json()["no_rope_layers"];
    if (!layers.is_array() || static_cast<int64_t>(layers.size()) != c.n_layer)
      keys.unsupported("no_rope_layers", "expected one 0 or 1 per layer, " + std::to_string(c.n_layer) + " in all");
    std::vector<bool> nope;
    for (const auto& layer : layers) {
      if (layer != 0 && layer != 1) keys.unsupported("no_rope_layers", "expected 0 (no rotation) or 1 per layer");
      nope.push_back(layer == 0);
    }
    return every_nth_layer(keys, "no_rope_layers", nope, "a layer without rotary embeddings (SmolLM3's pattern)");
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(smollm3, lofi::model::SmolLm3Arch)
