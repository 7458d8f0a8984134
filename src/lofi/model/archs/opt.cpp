// OPT (OPTForCausalLM, model_type "opt"): modules in model/opt.h.
#include "lofi/error.h"
#include "lofi/model/arch.h"
#include "lofi/model/opt.h"

namespace lofi::model {
namespace {

class OptArch : public LmArch {
 public:
  std::string name() const override { return "opt"; }
  std::string hf_class() const override { return "OPTForCausalLM"; }
  CausalLm make(const LmConfig& c) const override { return std::make_shared<OptForCausalLMImpl>(c); }
  std::string base_prefix() const override { return "model."; }

  std::vector<HfKey> hf_keys() const override {
    return {{"vocab_size", &LmConfig::vocab_size, 50272},
            {"hidden_size", &LmConfig::d_model, 768},
            {"num_hidden_layers", &LmConfig::n_layer, 12},
            {"ffn_dim", &LmConfig::d_ff, 3072},
            {"num_attention_heads", &LmConfig::n_head, 12},
            {"max_position_embeddings", &LmConfig::max_seq_len, 2048},
            {"do_layer_norm_before", &LmConfig::do_layer_norm_before, true},
            {"dropout", &LmConfig::dropout, 0.1},
            {"attention_dropout", &LmConfig::attention_dropout, 0.0},
            {"tie_word_embeddings", &LmConfig::tie_word_embeddings, true}};
  }

  void read_hf(const HfKeys& keys, LmConfig& c) const override {
    c.activation = activation_from_hf(keys, "activation_function", "relu");
    c.embedding_dropout = 0.0;  // OPTDecoder has none
    c.layer_norm_eps = 1e-5;    // OPT's LayerNorms use torch's default
    c.word_embed_proj_dim = keys.integer("word_embed_proj_dim", c.d_model);
    if (c.word_embed_proj_dim == c.d_model) c.word_embed_proj_dim = 0;
    keys.require_bool("enable_bias", true, true, "lofi's OPT layers always have biases");
    keys.require_bool("layer_norm_elementwise_affine", true, true, "lofi's LayerNorms always have weight and bias");
    keys.require_bool("_remove_final_layer_norm", false, false, "lofi keeps the final LayerNorm of pre-LayerNorm OPT");
    if (keys.number("layerdrop", 0.0) != 0.0) keys.unsupported("layerdrop", "lofi never skips layers");
  }

  void write_hf(const LmConfig& c, nlohmann::ordered_json& out) const override {
    // OPT's config has no embedding dropout; it only shapes training, so the exported model
    // computes the same and the rate is left out.
    if (c.layer_norm_eps != 1e-5) fail("export: OPT's LayerNorm epsilon is fixed at 1e-5; model.layer_norm_eps is ", c.layer_norm_eps);
    out["activation_function"] = activation_to_hf(c.activation);
    out["_remove_final_layer_norm"] = false;
    out["word_embed_proj_dim"] = c.word_embed_proj_dim > 0 ? c.word_embed_proj_dim : c.d_model;
    out["layerdrop"] = 0.0;
    out["enable_bias"] = true;
    out["layer_norm_elementwise_affine"] = true;
    for (const auto& [key, id] : {std::pair{"pad_token_id", 1}, {"bos_token_id", 2}, {"eos_token_id", 2}})
      if (!out.contains(key)) out[key] = id;
  }

  void check(const LmConfig& c, const std::string& source) const override {
    require_defaults(c, source, llama_class_keys());
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(opt, lofi::model::OptArch)
