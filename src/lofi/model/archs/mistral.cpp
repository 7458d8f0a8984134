// Mistral (MistralForCausalLM, model_type "mistral"): Llama's modules without biases, 8 key/value
// heads by default, and a sliding attention window (sliding_window; null: none), honoured. Also the
// language model of Mistral3ForConditionalGeneration (model_type "mistral3").
#include "lofi/error.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class MistralArch : public LlamaClassArch {
 public:
  std::string name() const override { return "mistral"; }
  std::string hf_class() const override { return "MistralForCausalLM"; }
  // Mistral Small 3.1 and 3.2: this model inside, beside a Pixtral vision tower.
  std::vector<HfWrapper> hf_wrappers() const override { return {{"mistral3", "Mistral3ForConditionalGeneration"}}; }

 protected:
  int64_t default_vocab_size() const override { return 32000; }
  int64_t default_d_ff() const override { return 14336; }
  int64_t default_kv_heads() const override { return 8; }
  int64_t default_max_positions() const override { return 4096 * 32; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    read_sliding_window(keys, c, /*absent=*/4096);  // transformers' default window
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["sliding_window"] = c.sliding_window > 0 ? nlohmann::ordered_json(c.sliding_window) : nlohmann::ordered_json();
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    require_defaults(c, source, {"attention_bias", "attention_out_bias", "mlp_bias"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(mistral, lofi::model::MistralArch)
