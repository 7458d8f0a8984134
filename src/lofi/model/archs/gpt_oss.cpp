// gpt-oss (GptOssForCausalLM, model_type "gpt_oss": gpt-oss-20b and gpt-oss-120b): grouped-query
// attention with biases on all four projections and a learned sink logit per head
// (self_attn.sinks, LmConfig::attention_sinks), every other layer over a sliding window
// (layer_types: the first of each pair), yarn-scaled rotary embeddings, and in every block a
// mixture of experts of its own kind (model/gpt_oss_moe.h: a router with a bias, experts with
// biases and a clamped gated activation, held as 3-D tensors). output_router_logits adds the
// routers' load-balancing loss while training (model/router_stats.h). The published checkpoints
// hold the experts in MXFP4 (quantization_config); lofi reads them dequantized (model/hf.cpp says how).
#include "lofi/error.h"
#include "lofi/model/gpt_oss_moe.h"
#include "lofi/model/llama.h"
#include "lofi/model/llama_arch.h"

namespace lofi::model {
namespace {

class GptOssArch : public LlamaClassArch {
 public:
  std::string name() const override { return "gpt_oss"; }
  std::string hf_class() const override { return "GptOssForCausalLM"; }
  CausalLm make(const LmConfig& c) const override {
    LlamaLayout layout;
    layout.make_moe = [](const LmConfig& config) { return torch::nn::AnyModule(GptOssMoe(config)); };
    return std::make_shared<LlamaForCausalLMImpl>(c, layout);
  }
  std::vector<HfKey> hf_keys() const override {  // GptOssConfig's defaults
    return hf_keys_with({{"hidden_size", 2880}, {"num_hidden_layers", 36}, {"num_attention_heads", 64}, {"rms_norm_eps", 1e-5}});
  }

 protected:
  int64_t default_vocab_size() const override { return 201088; }
  int64_t default_d_ff() const override { return 2880; }
  int64_t default_kv_heads() const override { return 8; }
  int64_t default_max_positions() const override { return 131072; }
  int64_t default_head_dim() const override { return 64; }
  double default_rope_theta() const override { return 150000.0; }
  bool mixture_of_experts() const override { return true; }
  bool sliding_layers() const override { return true; }
  std::vector<std::string> variant_keys() const override {
    return {"sliding_window_pattern", "attention_sinks", "swiglu_limit", "swiglu_alpha"};
  }
  void read_variant(const HfKeys& keys, LmConfig& c) const override {
    read_sliding_window(keys, c, /*absent=*/128);
    c.sliding_window_pattern = 2;  // GptOssConfig's without layer_types: sliding, full, sliding, ...
    c.attention_bias = c.attention_out_bias = keys.boolean("attention_bias", true);
    c.mlp_bias = false;
    c.attention_sinks = true;
    c.num_experts = keys.size("num_local_experts", 128);
    c.experts_per_token = keys.size("num_experts_per_tok", 4);
    c.norm_topk_prob = true;  // a softmax over the chosen experts' logits: their probabilities rescaled to sum to 1
    c.swiglu_limit = keys.number("swiglu_limit", 7.0);
    c.swiglu_alpha = keys.number("swiglu_alpha", 1.702);
    if (!(c.swiglu_limit > 0)) keys.unsupported("swiglu_limit", "gpt-oss's experts clamp at a positive limit");
    if (!(c.swiglu_alpha > 0)) keys.unsupported("swiglu_alpha", "a positive number");
    read_router_settings(keys, c);
  }
  void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const override {
    out["sliding_window"] = c.sliding_window;
    nlohmann::ordered_json kinds = nlohmann::ordered_json::array();
    for (int64_t i = 0; i < c.n_layer; ++i) kinds.push_back(c.layer_window(i) > 0 ? "sliding_attention" : "full_attention");
    out["layer_types"] = kinds;
    out["attention_bias"] = c.attention_bias;
    out["num_local_experts"] = c.num_experts;
    out["num_experts_per_tok"] = c.experts_per_token;
    out["experts_per_token"] = c.experts_per_token;  // the published files' spelling too
    out["swiglu_limit"] = c.swiglu_limit;
    out["swiglu_alpha"] = c.swiglu_alpha;
    write_router_settings(c, out);
  }
  void check_variant(const LmConfig& c, const std::string& source) const override {
    check_all_attention_biases_or_none(c, source);
    auto need = [&](bool ok, const auto&... why) {
      if (!ok) fail(source, ": arch \"gpt_oss\" ", why...);
    };
    need(!c.mlp_bias, "has the experts' own biases, no MLP: set mlp_bias = false");
    need(c.attention_sinks, "has a sink logit in every head: set attention_sinks = true");
    need(c.swiglu_limit > 0, "clamps its experts' activations: set swiglu_limit > 0 (its models: 7)");
    need(c.norm_topk_prob, "weighs the chosen experts by a softmax over them: set norm_topk_prob = true");
    need(c.sliding_window_pattern >= 0 && c.sliding_window >= 0, "needs sliding_window and sliding_window_pattern >= 0");
    require_defaults(c, source, {"moe_d_ff", "shared_expert_d_ff"});
  }
};

}  // namespace
}  // namespace lofi::model

LOFI_LM_ARCH(gpt_oss, lofi::model::GptOssArch)
