// The shape of a causal language model, whichever architecture builds it. Plain values with
// Hugging Face meanings, so config.json maps onto it key by key (see hf.h).
#pragma once
#include <cstdint>
#include <string>

namespace lofi::model {

struct LmConfig {
  std::string arch = "opt";          // "opt" (OPTForCausalLM) or "gpt2" (GPT2LMHeadModel)
  int64_t n_layer = 4;               // decoder blocks, e.g. 12 for OPT-125M
  int64_t n_head = 4;                // e.g. 12
  int64_t d_model = 128;             // residual width, e.g. 768
  int64_t d_ff = 512;                // MLP hidden width, e.g. 3072
  int64_t vocab_size = 256;          // e.g. 50272
  int64_t max_seq_len = 128;         // learned positions, e.g. 2048
  std::string activation = "relu";   // "relu", "gelu" (tanh approximation) or "gelu_erf" (exact)
  double dropout = 0.0;              // on residual branches (OPT dropout, GPT-2 resid_pdrop)
  double attention_dropout = 0.0;    // on attention probabilities (attention_dropout, attn_pdrop)
  double embedding_dropout = 0.0;    // on token + position embeddings (GPT-2 embd_pdrop; OPT has none)
  double layer_norm_eps = 1e-5;      // OPT: 1e-5; GPT-2: layer_norm_epsilon
  bool do_layer_norm_before = true;  // OPT: false is opt-350m's post-LayerNorm (no final norm)
  int64_t word_embed_proj_dim = 0;   // OPT: token embedding width when it differs from d_model
                                     // (opt-350m: 512, with project_in/out); 0: d_model
};

}  // namespace lofi::model
