// Qwen3 (Qwen3ForCausalLM, model_type "qwen3"): Llama's modules with an RMSNorm over each query and
// key head before the rotation (q_norm, k_norm: one weight of head_dim each, shared by the heads),
// a head_dim of its own (128 unless config.json says; not hidden_size / num_attention_heads), and
// attention_bias on all four attention projections (false in the published models). Its sliding
// window (use_sliding_window) is refused, as Qwen2's.
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class Qwen3Arch : public LlamaClassArch {
 public:
  std::string name() const override { return "qwen3"; }
  std::string hf_class() const override { return "Qwen3ForCausalLM"; }

 protected:
  int64_t default_vocab_size() const override { return 151936; }
  int64_t default_d_ff() const override { return 22016; }
  int64_t default_kv_heads() const override { return 32; }
  int64_t default_max_positions() const override { return 32768; }
  int64_t default_head_dim() const override { return 128; }
  bool qk_norm() const override { return true; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    keys.require_bool("use_sliding_window", false, false,
                      "lofi attends over the whole sequence in every layer; Qwen3's window covers only some layers");
    c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", false);
    c.mlp_bias = false;
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["attention_bias"] = c.attention_bias;
    out["use_sliding_window"] = false;
    out["sliding_window"] = nullptr;
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    check_all_attention_biases_or_none(c, source);
    require_defaults(c, source, {"mlp_bias", "sliding_window"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(qwen3, lofi::model::Qwen3Arch)
