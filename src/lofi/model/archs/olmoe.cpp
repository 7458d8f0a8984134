// OLMoE (OlmoeForCausalLM, model_type "olmoe": OLMoE-1B-7B): Llama's blocks (a norm before the
// attention and one before the MLP) with OLMo's RMSNorm over all query heads together and one over
// all key heads before the rotation (llama.h's LlamaLayout::norms_over_heads), and a mixture of
// experts in every block's MLP (model/moe.h: num_experts, each token routed to num_experts_per_tok,
// its raw router probabilities unless norm_topk_prob), named as its checkpoints name them
// (mlp.gate, mlp.experts.N.gate_proj / up_proj / down_proj). Refused by name: clip_qkv (its published
// models set null). output_router_logits adds the routers' load-balancing loss while training.
#include "lofi/model/llama.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class OlmoeArch : public LlamaClassArch {
 public:
  std::string name() const override { return "olmoe"; }
  std::string hf_class() const override { return "OlmoeForCausalLM"; }
  CausalLm make(const LmConfig& c) const override {
    LlamaLayout layout;
    layout.norms_over_heads = true;
    return std::make_shared<LlamaForCausalLMImpl>(c, layout);
  }
  std::vector<HfKey> hf_keys() const override {  // OlmoeConfig's defaults
    return hf_keys_with({{"hidden_size", 2048}, {"num_hidden_layers", 16}, {"num_attention_heads", 16}, {"rms_norm_eps", 1e-5}});
  }

 protected:
  int64_t default_vocab_size() const override { return 50304; }
  int64_t default_d_ff() const override { return 2048; }
  int64_t default_kv_heads() const override { return 0; }
  int64_t default_max_positions() const override { return 4096; }
  bool qk_norm() const override { return true; }
  bool mixture_of_experts() const override { return true; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", false);
    c.mlp_bias = false;
    if (keys.has("clip_qkv")) keys.unsupported("clip_qkv", "lofi does not clip the projections; OLMoE's published models set null");
    c.num_experts = keys.size("num_experts", 64);
    c.experts_per_token = keys.size("num_experts_per_tok", 8);
    c.norm_topk_prob = keys.boolean("norm_topk_prob", false);
    read_router_settings(keys, c);
    if (!keys.has("router_aux_loss_coef")) c.router_aux_loss_coef = 0.01;  // OlmoeConfig's
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["attention_bias"] = c.attention_bias;
    out["clip_qkv"] = nullptr;
    out["num_experts"] = c.num_experts;
    out["num_experts_per_tok"] = c.experts_per_token;
    out["norm_topk_prob"] = c.norm_topk_prob;
    write_router_settings(c, out);
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    check_all_attention_biases_or_none(c, source);
    require_defaults(c, source, {"mlp_bias", "sliding_window", "moe_d_ff", "shared_expert_d_ff"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(olmoe, lofi::model::OlmoeArch)
