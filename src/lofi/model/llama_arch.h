// What Llama, Qwen2, Qwen3 and Mistral share as architectures (archs/llama.cpp, qwen2.cpp,
// qwen3.cpp, mistral.cpp): the modules of llama.h, the config.json keys of transformers'
// LlamaConfig family, the rotary settings in both of transformers' spellings (rope_theta +
// rope_scaling, as hub checkpoints carry them, and rope_parameters, as transformers 5 writes
// them), and their checks. Each architecture says what differs: its name, class, defaults,
// biases, sliding window and query/key norms.
#pragma once
#include "lofi/model/arch.h"

namespace lofi::model {

// The pieces of reading, writing and checking them that other architectures of this class
// (archs/gemma3_text.cpp) share without being one of these.
// num_key_value_heads (checked to divide the heads; 0 when equal) and head_dim (0 when it is
// hidden_size / heads); pretraining_tp refused; no dropout.
void read_llama_heads(const HfKeys& keys, LmConfig& c, int64_t default_kv_heads, int64_t default_head_dim);
// A rotary object ROPE of config.json KEYS ({"rope_type": "llama3", "factor": 8.0, ...}; "type" too)
// into C's rope_* settings and partial_rotary_factor (refused unless PARTIAL_ROTATION), with the
// top-level keys transformers prefers (original_max_position_embeddings) or falls back to
// (partial_rotary_factor); THETA_FALLBACK where it has no rope_theta.
void read_rope_object(const HfKeys& keys, const HfKeys& rope, double theta_fallback, LmConfig& c, bool partial_rotation = false);
// C's rope_* settings as that object, with rope_theta.
nlohmann::ordered_json rope_object(const LmConfig& c);
// The same as transformers 4's rope_scaling: without rope_theta (a key of its own there); null
// when unscaled.
nlohmann::ordered_json rope_scaling_object(const LmConfig& c);
// The N for which every Nth of FLAGS (one per layer, from config.json's KEY) is true and the
// others false; 0 when none is. Refuses KEY by name, saying WHAT lofi builds, when they follow no
// such N.
int64_t every_nth_layer(const HfKeys& keys, const std::string& key, const std::vector<bool>& flags, const std::string& what);
// config.json's layer_types as LmConfig::sliding_window_pattern: every Nth layer "full_attention",
// the others "sliding_attention"; 0 when all are one kind (all full: sliding_window set to 0 too).
// Refuses other kinds and layers that follow no such N by name.
int64_t layer_types_pattern(const HfKeys& keys, LmConfig& c);
// sliding_window into C: a number of tokens; null: none; absent: ABSENT (0: none).
void read_sliding_window(const HfKeys& keys, LmConfig& c, int64_t absent);
// For architectures whose attention_bias puts a bias on all four projections or none.
void check_all_attention_biases_or_none(const LmConfig& c, const std::string& source);
// What every model of the class needs: no dropout, rotary settings lofi builds (rotary.h).
void check_llama_class(const LmConfig& c, const std::string& source);

class LlamaClassArch : public LmArch {
 public:
  CausalLm make(const LmConfig& c) const override;
  std::string base_prefix() const override { return "model."; }
  std::vector<HfKey> hf_keys() const override;
  void read_hf(const HfKeys& keys, LmConfig& c) const override;
  void write_hf(const LmConfig& c, nlohmann::ordered_json& out) const override;
  void check(const LmConfig& c, const std::string& source) const override;

 protected:
  // transformers' defaults for this model type.
  virtual int64_t default_vocab_size() const = 0;
  virtual int64_t default_d_ff() const = 0;
  virtual int64_t default_kv_heads() const = 0;  // 0: num_attention_heads
  virtual int64_t default_max_positions() const = 0;
  virtual int64_t default_head_dim() const { return 0; }  // 0: hidden_size / num_attention_heads
  virtual double default_rope_theta() const { return 10000.0; }
  // Whether some layers attend without rotary embeddings (LmConfig::no_rope_interval: SmolLM3).
  virtual bool nope_layers() const { return false; }
  // Whether only the front of each head rotates where config.json says so (partial_rotary_factor:
  // Phi-4-mini); transformers' other models of the class rotate whole heads.
  virtual bool partial_rotation() const { return false; }
  // Whether the model scales embeddings, residual branches, scores and logits (Granite's LmConfig keys).
  virtual bool multipliers() const { return false; }
  // Whether each block's MLP is a mixture of experts (LmConfig::num_experts, moe.h).
  virtual bool mixture_of_experts() const { return false; }
  // Whether layers alternate between sliding_window and the whole sequence as config.json's
  // layer_types says (LmConfig::sliding_window_pattern); else every layer must be "full_attention".
  virtual bool sliding_layers() const { return false; }
  // LmConfig keys of the other architectures' lists (arch.h) that this one reads and checks itself
  // (check_variant): check() does not hold them at their defaults.
  virtual std::vector<std::string> variant_keys() const { return {}; }
  // The router settings transformers trains with beyond the model: whether its load-balancing loss
  // is added (output_router_logits), and its weight (router_aux_loss_coef); read and written.
  static void read_router_settings(const HfKeys& keys, LmConfig& c);
  static void write_router_settings(const LmConfig& c, nlohmann::ordered_json& out);
  // Qwen2-MoE's and Qwen3-MoE's expert keys, read and written: num_experts (transformers 5 writes
  // num_local_experts too), num_experts_per_tok, moe_intermediate_size, norm_topk_prob and the
  // router settings, with this model type's defaults; dense blocks among the sparse ones
  // (decoder_sparse_step other than 1, mlp_only_layers) refused by name.
  static void read_qwen_experts(const HfKeys& keys, LmConfig& c, int64_t default_experts, int64_t default_per_token,
                                int64_t default_width);
  static void write_qwen_experts(const LmConfig& c, nlohmann::ordered_json& out);
  // Whether every head's queries and keys pass an RMSNorm before the rotation (LmConfig::qk_norm):
  // fixed by the architecture, so read from none of config.json's keys.
  virtual bool qk_norm() const { return false; }
  // hf_keys() with other defaults for some keys (this model type's, where they are not LlamaConfig's).
  std::vector<HfKey> hf_keys_with(const std::vector<std::pair<std::string, nlohmann::json>>& defaults) const;
  // Biases and window beyond the shared keys: read, written, checked.
  virtual void read_variant(const HfKeys& keys, LmConfig& c) const = 0;
  virtual void write_variant(const LmConfig& c, nlohmann::ordered_json& out) const = 0;
  virtual void check_variant(const LmConfig& c, const std::string& source) const = 0;
};

}  // namespace lofi::model
