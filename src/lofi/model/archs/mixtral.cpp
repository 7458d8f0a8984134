// Mixtral (MixtralForCausalLM, model_type "mixtral": Mixtral 8x7B and 8x22B): Mistral's attention
// with a mixture of experts in every block (model/moe.h: num_local_experts, each token routed to
// num_experts_per_tok, their router probabilities rescaled to sum to 1), named as its checkpoints
// name it: block_sparse_moe.gate, block_sparse_moe.experts.N.w1 (gate), w3 (up), w2 (down).
// Refused by name: the router's training-time jitter (router_jitter_noise above 0).
// output_router_logits adds the routers' load-balancing loss while training (model/router_stats.h).
#include "lofi/model/llama.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class MixtralArch : public LlamaClassArch {
 public:
  std::string name() const override { return "mixtral"; }
  std::string hf_class() const override { return "MixtralForCausalLM"; }
  CausalLm make(const LmConfig& c) const override {
    return std::make_shared<LlamaForCausalLMImpl>(c, LlamaLayout{Projections::kSeparate, MoeNames{"block_sparse_moe", "w1", "w3", "w2"}});
  }

 protected:
  int64_t default_vocab_size() const override { return 32000; }
  int64_t default_d_ff() const override { return 14336; }
  int64_t default_kv_heads() const override { return 8; }
  int64_t default_max_positions() const override { return 4096 * 32; }
  double default_rope_theta() const override { return 1e6; }
  bool mixture_of_experts() const override { return true; }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    read_sliding_window(keys, c, /*absent=*/0);
    c.num_experts = keys.size("num_local_experts", 8);
    c.experts_per_token = keys.size("num_experts_per_tok", 2);
    c.norm_topk_prob = true;
    if (keys.number("router_jitter_noise", 0.0) != 0.0)
      keys.unsupported("router_jitter_noise", "lofi routes each token by the router alone; Mixtral's published models set 0");
    read_router_settings(keys, c);
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["sliding_window"] = c.sliding_window > 0 ? nlohmann::ordered_json(c.sliding_window) : nlohmann::ordered_json();
    if (c.head_dim == 0) out["head_dim"] = nullptr;  // as MixtralConfig writes it: hidden_size / heads
    out["num_local_experts"] = c.num_experts;
    out["num_experts_per_tok"] = c.experts_per_token;
    out["router_jitter_noise"] = 0.0;
    write_router_settings(c, out);
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    require_defaults(c, source, {"attention_bias", "attention_out_bias", "mlp_bias", "moe_d_ff", "shared_expert_d_ff"});
    if (!c.norm_topk_prob) fail(source, ": arch \"mixtral\" rescales the chosen experts' probabilities: set norm_topk_prob = true");
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(mixtral, lofi::model::MixtralArch)
