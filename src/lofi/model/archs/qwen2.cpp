// Qwen2 / Qwen2.5 (Qwen2ForCausalLM, model_type "qwen2"): Llama's modules with biases on the
// q/k/v projections (none on o_proj or the MLP). Its sliding window (use_sliding_window) is
// refused: transformers applies it only to layers from max_window_layers on.
#include "lofi/error.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class Qwen2Arch : public LlamaClassArch {
 public:
  std::string name() const override { return "qwen2"; }
  std::string hf_class() const override { return "Qwen2ForCausalLM"; }

 protected:
  int64_t default_vocab_size() const override { return 151936; }
  int64_t default_d_ff() const override { return 22016; }
  int64_t default_kv_heads() const override { return 32; }
  int64_t default_max_positions() const override { return 32768; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    keys.require_bool("use_sliding_window", false, false,
                      "lofi attends over the whole sequence in every layer; Qwen2's window covers only some layers");
    c.attention_bias = true;
    c.attention_out_bias = c.mlp_bias = false;
  }
  void write_variant(const LmConfig&, nlohmann::ordered_json& out) const override { out["use_sliding_window"] = false; }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    if (!c.attention_bias || c.attention_out_bias || c.mlp_bias)
      fail(source, ": arch \"qwen2\" has biases on q/k/v_proj only: set attention_bias = true, attention_out_bias = false, "
                   "mlp_bias = false");
    require_defaults(c, source, {"sliding_window"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(qwen2, lofi::model::Qwen2Arch)
