// GPT-2 (GPT2LMHeadModel, model_type "gpt2"): modules in model/gpt2.h.
#include "lofi/model/arch.h"
#include "lofi/model/gpt2.h"
#include "lofi/strings.h"

namespace lofi::model {
namespace {

class Gpt2Arch : public LmArch {
 public:
  std::string name() const override { return "gpt2"; }
  std::string hf_class() const override { return "GPT2LMHeadModel"; }
  CausalLm make(const LmConfig& c) const override { return std::make_shared<Gpt2LMHeadModelImpl>(c); }
  std::string base_prefix() const override { return "transformer."; }
  // Causal-mask buffers older checkpoints carry; lofi builds the mask itself.
  bool skipped_tensor(const std::string& name) const override {
    return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias");
  }

  std::vector<HfKey> hf_keys() const override {
    return {{"vocab_size", &LmConfig::vocab_size, 50257},
            {"n_embd", &LmConfig::d_model, 768},
            {"n_layer", &LmConfig::n_layer, 12},
            {"n_head", &LmConfig::n_head, 12},
            {"n_positions", &LmConfig::max_seq_len, 1024},
            {"resid_pdrop", &LmConfig::dropout, 0.1},
            {"attn_pdrop", &LmConfig::attention_dropout, 0.1},
            {"embd_pdrop", &LmConfig::embedding_dropout, 0.1},
            {"layer_norm_epsilon", &LmConfig::layer_norm_eps, 1e-5},
            {"tie_word_embeddings", &LmConfig::tie_word_embeddings, true}};
  }

  void read_hf(const HfKeys& keys, LmConfig& c) const override {
    c.d_ff = keys.integer("n_inner", 4 * c.d_model);
    c.activation = activation_from_hf(keys, "activation_function", "gelu_new");
    keys.require_bool("scale_attn_weights", true, true, "lofi scales attention scores by 1/sqrt(head_dim)");
    keys.require_bool("scale_attn_by_inverse_layer_idx", false, false, "lofi does not scale scores by layer index");
    keys.require_bool("add_cross_attention", false, false, "lofi's GPT-2 is decoder-only");
    // reorder_and_upcast_attn only changes how fp16 scores are computed; lofi's attention runs in
    // the weights' dtype, fp32 when training, so either value gives the same model.
  }

  void write_hf(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["n_inner"] = c.d_ff;
    out["activation_function"] = activation_to_hf(c.activation);
    out["scale_attn_weights"] = true;
    out["scale_attn_by_inverse_layer_idx"] = false;
    out["reorder_and_upcast_attn"] = false;
    for (const char* key : {"bos_token_id", "eos_token_id"})
      if (!out.contains(key)) out[key] = 50256;
  }

  void check(const LmConfig& c, const std::string& source) const override {
    require_defaults(c, source, opt_variant_keys());
    require_defaults(c, source, llama_class_keys());
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(gpt2, lofi::model::Gpt2Arch)
