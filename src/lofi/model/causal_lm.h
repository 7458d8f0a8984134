// The causal language model as training, evaluation and merging see it: tokens (B, T) in,
// next-token logits (B, T, V) out, whatever the architecture. make_causal_lm() picks the
// architecture (opt.h, gpt2.h) from LmConfig::arch; each names its parameters as Hugging Face does.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "lofi/model/lm_config.h"

namespace lofi::model {

struct CausalLmImpl : torch::nn::Module {
  explicit CausalLmImpl(const LmConfig& c) : config(c) {}
  virtual torch::Tensor forward(const torch::Tensor& tokens) = 0;  // (B, T) int64 -> logits (B, T, V)
  // Mean next-token cross-entropy of TARGETS (B, T) given TOKENS (B, T).
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& targets);
  // The token embedding the output head is tied to: (V, E).
  virtual torch::Tensor tied_embedding() const = 0;

  LmConfig config;
};
using CausalLm = std::shared_ptr<CausalLmImpl>;

// A model of CONFIG.arch, with unset (not yet initialised) weights.
CausalLm make_causal_lm(const LmConfig& config);

// The usual initialisation of both families: normal(0, 0.02) for linear, Conv1D and embedding
// weights, zero biases, LayerNorms at identity. Draws from torch's global generator.
void init_causal_lm_weights(CausalLmImpl& model);

// Checks CONFIG (architecture, activation, divisibility); throws naming SOURCE and the field.
void check_lm_config(const LmConfig& config, const std::string& source);

}  // namespace lofi::model
