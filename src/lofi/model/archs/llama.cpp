// Llama (LlamaForCausalLM, model_type "llama"; Llama 2/3.x, TinyLlama, SmolLM): modules in
// model/llama.h, shared keys in model/llama_arch.h. attention_bias puts biases on all four
// attention projections, mlp_bias on the MLP's three; no sliding window.
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class LlamaArch : public LlamaClassArch {
 public:
  std::string name() const override { return "llama"; }
  std::string hf_class() const override { return "LlamaForCausalLM"; }

 protected:
  int64_t default_vocab_size() const override { return 32000; }
  int64_t default_d_ff() const override { return 11008; }
  int64_t default_kv_heads() const override { return 0; }
  int64_t default_max_positions() const override { return 2048; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", false);
    c.mlp_bias = keys.boolean("mlp_bias", false);
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["attention_bias"] = c.attention_bias;
    out["mlp_bias"] = c.mlp_bias;
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    check_all_attention_biases_or_none(c, source);
    require_defaults(c, source, {"sliding_window"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(llama, lofi::model::LlamaArch)
