// The causal language model as training, evaluation and merging see it: tokens (B, T) in,
// next-token logits (B, T, V) out, whatever the architecture. make_causal_lm() builds the
// architecture LmConfig::arch names (arch.h, archs/); each names its parameters as Hugging Face
// does. The output head is the token embedding (tied) or a top-level lm_head (untied), as in
// transformers.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "lofi/model/block_runner.h"
#include "lofi/model/blocks.h"
#include "lofi/model/deferred_weights.h"
#include "lofi/model/lm_config.h"

namespace lofi::model {

// The untied output head: its (V, E) weight alone, "lm_head.weight" as transformers names it. Not an
// adaptable Linear, so lora.target = "all-linear" leaves the output layer out, as PEFT does; and no
// draw of its own: the model's init or a load sets it.
struct OutputHeadImpl : torch::nn::Module {
  OutputHeadImpl(int64_t in, int64_t out);
  torch::Tensor weight;
};
TORCH_MODULE(OutputHead);

struct CausalLmImpl : torch::nn::Module {
  explicit CausalLmImpl(const LmConfig& c) : config(c) {}
  // The final hidden states, before the output head: (B, T) int64 -> (B, T, E). PACKING: several
  // samples per row (blocks.h); empty: one sequence per row.
  virtual torch::Tensor hidden(const torch::Tensor& tokens, const Packing& packing = {}) = 0;
  torch::Tensor forward(const torch::Tensor& tokens) { return head(hidden(tokens)); }  // (B, T) -> logits (B, T, V)
  // Mean next-token cross-entropy of TARGETS (B, T) given TOKENS (B, T), through the chunked
  // kernel (kernels/cross_entropy.h): the (B, T, V) logits are never held whole. Targets of -100
  // are left out. KEPT (B, T) bool: the tokens that are not padding, which alone a mixture of
  // experts' load-balancing loss counts (transformers' attention mask); undefined: all.
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& targets, const Packing& packing = {},
                     const torch::Tensor& kept = {});
  // The token embedding: (V, E). The output head when config.tie_word_embeddings.
  virtual torch::Tensor token_embedding() const = 0;
  // The output head's weight (V, E): lm_head's, or the token embedding when tied.
  torch::Tensor head_weight() const { return lm_head ? lm_head->weight : token_embedding(); }
  // Next-token logits of the final hidden states H (B, T, E): (B, T, V); soft-capped where
  // config.final_logit_softcapping (Gemma 2), in loss() too.
  torch::Tensor head(const torch::Tensor& h) const;

  LmConfig config;
  OutputHead lm_head{nullptr};  // (V, E); only when the head is untied
  // The decoder's repeated blocks, in order (a node that shards its parameters gathers one at a time).
  virtual torch::nn::ModuleList decoder_blocks() const = 0;
  // Activation checkpointing (checkpointing.h) of every K-th decoder block while training; 0: none.
  int64_t checkpoint_every = 0;
  // Around each block's forward (block_runner.h); unset: none.
  BlockHooks block_hooks;
  BlockRunner block_runner() const { return {checkpoint_every, block_hooks.before ? &block_hooks : nullptr}; }

 protected:
  // Registers lm_head (E -> V) when the config unties the head; architectures call it last, so
  // parameters come in Hugging Face's order.
  void register_head(int64_t embedding_width);
};
using CausalLm = std::shared_ptr<CausalLmImpl>;

// A model of CONFIG.arch, with unset (not yet initialised) weights.
CausalLm make_causal_lm(const LmConfig& config);

// The usual initialisation of these models: normal(0, 0.02) for linear, Conv1D and embedding
// weights, zero biases, LayerNorm / RMSNorm scales at one. Each weight draws from its own stream,
// seed::parameter(SEED, its name's hash), over every core (seeded_init.h): one seed gives one model,
// whatever the thread count or the order of the parameters. A parameter on the meta device
// (model/deferred_weights.h) is left to DEFERRED with the same value, filled later in any order.
void init_causal_lm_weights(CausalLmImpl& model, uint64_t seed, DeferredWeights* deferred = nullptr);

// Checks CONFIG (architecture, activation, divisibility, then the architecture's own checks);
// throws naming SOURCE and the field.
void check_lm_config(const LmConfig& config, const std::string& source);

// Tensors a checkpoint of MODEL may carry that are not its parameters: "lm_head.weight" when the
// head is tied (some writers store the tied copy).
std::vector<std::string> tied_copies(const CausalLmImpl& model);

}  // namespace lofi::model
