// Qwen2-MoE (Qwen2MoeForCausalLM, model_type "qwen2_moe": Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B):
// Qwen2's attention (biases on q/k/v, qkv_bias) with a mixture of experts in every block's MLP
// (model/moe.h: num_experts, each token routed to num_experts_per_tok, experts of
// moe_intermediate_size) and beside them a shared expert every token takes
// (shared_expert_intermediate_size wide), weighted by sigmoid(shared_expert_gate(x)). Refused by
// name: dense blocks among the sparse ones (decoder_sparse_step other than 1, mlp_only_layers) and
// the sliding window. output_router_logits adds the routers' load-balancing loss while training.
#include "lofi/error.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class Qwen2MoeArch : public LlamaClassArch {
 public:
  std::string name() const override { return "qwen2_moe"; }
  std::string hf_class() const override { return "Qwen2MoeForCausalLM"; }
  std::vector<HfKey> hf_keys() const override {  // Qwen2MoeConfig's defaults
    return hf_keys_with({{"hidden_size", 2048}, {"intermediate_size", 5632}, {"num_hidden_layers", 24}, {"num_attention_heads", 16}});
  }

 protected:
  int64_t default_vocab_size() const override { return 151936; }
  int64_t default_d_ff() const override { return 5632; }
  int64_t default_kv_heads() const override { return 16; }
  int64_t default_max_positions() const override { return 32768; }
  bool mixture_of_experts() const override { return true; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    keys.require_bool("use_sliding_window", false, false,
                      "lofi attends over the whole sequence in every layer; Qwen2-MoE's window covers only some layers");
    c.attention_bias = keys.boolean("qkv_bias", true);  // transformers 4 has no key: always biased
    c.attention_out_bias = c.mlp_bias = false;
    read_qwen_experts(keys, c, /*default_experts=*/60, /*default_per_token=*/4, /*default_width=*/1408);
    c.shared_expert_d_ff = keys.size("shared_expert_intermediate_size", 5632);
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["qkv_bias"] = c.attention_bias;
    out["use_sliding_window"] = false;
    out["sliding_window"] = 0;  // as Qwen2MoeConfig writes it without a window
    write_qwen_experts(c, out);
    out["shared_expert_intermediate_size"] = c.shared_expert_d_ff;
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    if (c.attention_out_bias || c.mlp_bias)
      fail(source, ": arch \"qwen2_moe\" has biases on q/k/v_proj at most: set attention_out_bias = false, mlp_bias = false");
    require_defaults(c, source, {"sliding_window"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(qwen2_moe, lofi::model::Qwen2MoeArch)
