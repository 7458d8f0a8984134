// The shape of a causal language model, whichever architecture builds it. Plain values with
// Hugging Face meanings; each architecture (archs/*.cpp) maps its config.json keys onto these
// fields, and lm_config_keys() names them for the run config's [model] section, so a field is
// declared here once and read, written and overridden everywhere by that one declaration.
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace lofi::model {

struct LmConfig {
  std::string arch = "opt";          // the architecture (model/archs/): "opt", "gpt2", "llama", "qwen2",
                                     // "mistral"; a run config's model.arch may also name an image
                                     // classifier ("vit"), which ignores these fields
  int64_t n_layer = 4;               // decoder blocks, e.g. 12 for OPT-125M
  int64_t n_head = 4;                // attention heads, e.g. 12
  int64_t d_model = 128;             // residual width, e.g. 768
  int64_t d_ff = 512;                // MLP hidden width, e.g. 3072
  int64_t vocab_size = 256;          // token ids must lie below this, e.g. 50272
  int64_t max_seq_len = 128;         // positions the model is trained for, e.g. 2048
  std::string activation = "relu";   // "relu", "gelu" (tanh approximation), "gelu_erf" (exact) or "silu"
  double dropout = 0.0;              // on residual branches (OPT dropout, GPT-2 resid_pdrop)
  double attention_dropout = 0.0;    // on attention probabilities (attention_dropout, attn_pdrop)
  double embedding_dropout = 0.0;    // on token + position embeddings (GPT-2 embd_pdrop; OPT has none)
  double layer_norm_eps = 1e-5;      // LayerNorm / RMSNorm epsilon (GPT-2 layer_norm_epsilon, Llama rms_norm_eps)
  bool do_layer_norm_before = true;  // OPT: false is opt-350m's post-LayerNorm (no final norm)
  int64_t word_embed_proj_dim = 0;   // OPT: token embedding width when it differs from d_model
                                     // (opt-350m: 512, with project_in/out); 0: d_model
  bool tie_word_embeddings = true;   // the output head is the token embedding; false: its own lm_head.weight
  // Llama-class decoders (llama, qwen2, mistral).
  int64_t n_kv_head = 0;             // grouped-query attention's key/value heads (num_key_value_heads); 0: n_head
  int64_t head_dim = 0;              // width of one head; 0: d_model / n_head
  double rope_theta = 10000.0;       // rotary embedding base
  std::string rope_scaling = "default";  // "default" (none), "linear" or "llama3" (Llama 3.1's)
  double rope_factor = 1.0;          // linear / llama3: how much longer the context is than trained
  double rope_low_freq_factor = 1.0;   // llama3
  double rope_high_freq_factor = 4.0;  // llama3
  int64_t rope_original_max_positions = 8192;  // llama3: the pretraining context
  bool attention_bias = false;       // biases on the q/k/v projections (Qwen2: true)
  bool attention_out_bias = false;   // a bias on the output projection (Llama's attention_bias sets both)
  bool mlp_bias = false;             // biases in the SwiGLU MLP
  int64_t sliding_window = 0;        // Mistral: each token attends to at most this many; 0: all before it

  int64_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  // About how many parameters this shape has (every architecture's blocks as the largest of them
  // would be: attention with its projections, a gated MLP, an untied head, learned positions),
  // never fewer than it has; in double, so absurd sizes do not overflow.
  double parameter_bound() const;
  int64_t head_width() const { return head_dim > 0 ? head_dim : d_model / n_head; }
};

// A field of LmConfig by member pointer, typed.
using LmField = std::variant<int64_t LmConfig::*, double LmConfig::*, bool LmConfig::*, std::string LmConfig::*>;

struct LmConfigKey {
  const char* key;  // its name under the run config's [model] section, e.g. "n_layer"
  LmField field;
};
// Every LmConfig field, in declaration order.
const std::vector<LmConfigKey>& lm_config_keys();

}  // namespace lofi::model
