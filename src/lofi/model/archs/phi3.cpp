// Phi-3 and Phi-4 (Phi3ForCausalLM, model_type "phi3": Phi-3-mini/medium, Phi-4 14B): Llama's
// modules with q/k/v fused into one qkv_proj and gate/up into one gate_up_proj (llama.h's
// Projections::kFused), no biases, and a sliding window where config.json sets one; longrope
// scaling (Phi-3-128k, Phi-3.5-mini, Phi-4-mini) and partial rotation (Phi-4-mini: 3/4 of each
// head) as model/rotary.h builds them. Refused by name: residual and embedding dropout
// (resid_pdrop, embd_pdrop; 0 in the published models).
#include "lofi/error.h"
#include "lofi/model/llama.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class Phi3Arch : public LlamaClassArch {
 public:
  std::string name() const override { return "phi3"; }
  std::string hf_class() const override { return "Phi3ForCausalLM"; }
  CausalLm make(const LmConfig& c) const override { return std::make_shared<LlamaForCausalLMImpl>(c, LlamaLayout{Projections::kFused}); }
  std::vector<HfKey> hf_keys() const override {  // Phi3Config's defaults
    return hf_keys_with({{"hidden_size", 3072}, {"rms_norm_eps", 1e-5}});
  }

 protected:
  int64_t default_vocab_size() const override { return 32064; }
  int64_t default_d_ff() const override { return 8192; }
  int64_t default_kv_heads() const override { return 0; }
  int64_t default_max_positions() const override { return 4096; }
  bool partial_rotation() const override { return true; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    read_sliding_window(keys, c, /*absent=*/0);
    for (const char* dropout : {"resid_pdrop", "embd_pdrop"})
      if (keys.number(dropout, 0.0) != 0.0)
        keys.unsupported(dropout, "lofi's Llama-class blocks have no residual or embedding dropout; Phi-3's published models set 0");
    c.attention_bias = c.attention_out_bias = c.mlp_bias = false;
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["sliding_window"] = c.sliding_window > 0 ? nlohmann::ordered_json(c.sliding_window) : nlohmann::ordered_json();
    // As transformers 5 writes Phi-3's: the rotated share in both places, and the original context
    // at the top level too, where Phi3Config reads it first (its default, 4096, would win otherwise).
    out["rope_parameters"]["partial_rotary_factor"] = c.partial_rotary_factor;
    out["partial_rotary_factor"] = c.partial_rotary_factor;
    if (out["rope_parameters"].contains("original_max_position_embeddings"))
      out["original_max_position_embeddings"] = c.rope_original_max_positions;
    out["resid_pdrop"] = 0.0;
    out["embd_pdrop"] = 0.0;
    // Phi3Config's default pad_token_id is 32000, an embedding row a smaller vocabulary lacks
    // (transformers then refuses the model): none unless the source directory's config gives one.
    if (!out.contains("pad_token_id")) out["pad_token_id"] = nullptr;
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    require_defaults(c, source, {"attention_bias", "attention_out_bias", "mlp_bias"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(phi3, lofi::model::Phi3Arch)
