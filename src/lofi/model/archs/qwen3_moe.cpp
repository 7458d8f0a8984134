// Qwen3-MoE (Qwen3MoeForCausalLM, model_type "qwen3_moe": Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's
// attention (an RMSNorm over each query and key head) with a mixture of experts in every block's
// MLP (model/moe.h: num_experts, each token routed to num_experts_per_tok, experts of
// moe_intermediate_size). Refused by name: dense blocks among the sparse ones (decoder_sparse_step
// other than 1, mlp_only_layers) and Qwen3's sliding window. output_router_logits adds the
// routers' load-balancing loss while training (model/router_stats.h).
#include "lofi/model/llama.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class Qwen3MoeArch : public LlamaClassArch {
 public:
  std::string name() const override { return "qwen3_moe"; }
  std::string hf_class() const override { return "Qwen3MoeForCausalLM"; }
  std::vector<HfKey> hf_keys() const override {  // Qwen3MoeConfig's defaults
    return hf_keys_with({{"hidden_size", 2048}, {"intermediate_size", 6144}, {"num_hidden_layers", 24}});
  }

 protected:
  int64_t default_vocab_size() const override { return 151936; }
  int64_t default_d_ff() const override { return 6144; }
  int64_t default_kv_heads() const override { return 4; }
  int64_t default_max_positions() const override { return 32768; }
  bool qk_norm() const override { return true; }
  bool mixture_of_experts() const override { return true; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    keys.require_bool("use_sliding_window", false, false,
                      "lofi attends over the whole sequence in every layer; Qwen3's window covers only some layers");
    c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", false);
    c.mlp_bias = false;
    read_qwen_experts(keys, c, /*default_experts=*/128, /*default_per_token=*/8, /*default_width=*/768);
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["attention_bias"] = c.attention_bias;
    out["use_sliding_window"] = false;
    out["sliding_window"] = nullptr;
    write_qwen_experts(c, out);
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    check_all_attention_biases_or_none(c, source);
    require_defaults(c, source, {"mlp_bias", "sliding_window", "shared_expert_d_ff"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(qwen3_moe, lofi::model::Qwen3MoeArch)
