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
    // The hub's files say num_experts; transformers 5 writes num_local_experts.
    c.num_experts = keys.size(keys.has("num_experts") ? "num_experts" : "num_local_experts", 128);
    c.experts_per_token = keys.size("num_experts_per_tok", 8);
    c.moe_d_ff = keys.size("moe_intermediate_size", 768);
    c.norm_topk_prob = keys.boolean("norm_topk_prob", false);
    if (keys.integer("decoder_sparse_step", 1) != 1)
      keys.unsupported("decoder_sparse_step", "lofi builds a mixture of experts in every block");
    if (keys.has("mlp_only_layers") && !keys.json()["mlp_only_layers"].empty())
      keys.unsupported("mlp_only_layers", "lofi builds a mixture of experts in every block");
    read_router_settings(keys, c);
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["attention_bias"] = c.attention_bias;
    out["use_sliding_window"] = false;
    out["sliding_window"] = nullptr;
    out["num_experts"] = c.num_experts;  // both spellings: transformers 4 reads one, 5 the other
    out["num_local_experts"] = c.num_experts;
    out["num_experts_per_tok"] = c.experts_per_token;
    out["moe_intermediate_size"] = c.moe_d_ff > 0 ? c.moe_d_ff : c.d_ff;
    out["norm_topk_prob"] = c.norm_topk_prob;
    out["decoder_sparse_step"] = 1;
    out["mlp_only_layers"] = nlohmann::ordered_json::array();
    write_router_settings(c, out);
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    check_all_attention_biases_or_none(c, source);
    require_defaults(c, source, {"mlp_bias", "sliding_window"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(qwen3_moe, lofi::model::Qwen3MoeArch)
