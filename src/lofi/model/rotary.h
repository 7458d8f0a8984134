// Rotary position embeddings as transformers computes them (modeling_rope_utils.py and the
// models' apply_rotary_pos_emb): the inverse frequencies of each rope_type lofi builds, the
// attention factor that scales cos and sin (yarn, longrope), longrope's switch from short to long
// factors past the pretraining context, and partial rotation (the front of each head turns, the
// rest passes: Phi-4-mini). Every Llama-class model (llama.h, gemma3.h) rotates through this.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "lofi/model/blocks.h"
#include "lofi/model/lm_config.h"

namespace lofi::model {

// What a model derives from its config once: not weights.
struct Rotary {
  torch::Tensor inv_freq;       // (R / 2) fp32, R = LmConfig::rotary_width(); longrope: the short factors'
  torch::Tensor long_inv_freq;  // longrope: the long factors', for sequences past original_positions; else undefined
  int64_t original_positions = 0;
  double attention_factor = 1.0;  // cos and sin are multiplied by it
};

// C's rotation (rope_scaling "default", "linear", "llama3", "yarn", "longrope" or "dynamic"),
// fp32 on the CPU; refused naming the setting where C's values cannot make one.
Rotary make_rotary(const LmConfig& c);

// cos and sin (T, R) of positions 0..T-1, or (B, 1, T, R) of PACKING's positions, in X's (B, T, C)
// dtype, times the attention factor. Longrope takes the long factors when the longest position + 1
// passes the original context (for packed rows decided on the device: no wait for the host).
// ROTARY's tensors are moved to X's device once.
std::pair<torch::Tensor, torch::Tensor> rope_angles(Rotary& rotary, const Packing& packing, const torch::Tensor& x);

// X (B, H, T, D) rotated: x * cos + rotate_half(x) * sin over its first R features (COS and SIN
// (T, R) or (B, 1, T, R)), the other D - R passed through; computed in fp32, returned in x's dtype.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// A longrope factor list as LmConfig keeps it ("1.0,1.5,2.0") and as config.json has it.
std::vector<double> rope_factor_list(const std::string& text);
std::string rope_factor_text(const std::vector<double>& factors);

// The first reason C's rotary settings cannot be built ("rope_short_factor has 3 numbers, ..."), or "".
std::string rotary_problem(const LmConfig& c);

}  // namespace lofi::model
