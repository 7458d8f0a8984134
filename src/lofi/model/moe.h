// A mixture-of-experts MLP (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE; gpt-oss's is gpt_oss_moe.h): a router picks
// each token's experts_per_token experts of num_experts, each a SwiGLU MLP; the token's output is their
// outputs weighted by the router's softmax probabilities of them (rescaled to sum to 1 where norm_topk_prob;
// Mixtral always). Computed as transformers computes it: the router's probabilities in fp32, each expert on
// the tokens routed to it, in expert order. Parameters named as the checkpoints on the hub name them
// ("mlp.gate.weight", "mlp.experts.3.gate_proj.weight"; Mixtral "block_sparse_moe" and w1, w3, w2), which
// transformers 5 writes too (its modules hold the experts as 3-D tensors). Neither the router nor the experts
// take a LoRA adapter: in transformers 5 they are bare parameters, which PEFT's target_modules and
// "all-linear" do not reach either. Qwen2-MoE's shared expert and its gate are linear layers there, and take
// adapters here as in PEFT.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

#include "lofi/model/linear.h"
#include "lofi/model/lm_config.h"

namespace lofi::model {

// How an architecture's checkpoints name a mixture-of-experts block's parts.
struct MoeNames {
  std::string block = "mlp";                                     // in each decoder layer (Mixtral: "block_sparse_moe")
  std::string gate = "gate_proj", up = "up_proj", down = "down_proj";  // an expert's layers (Mixtral: w1, w3, w2)
};

// Builds a block's mixture of experts where SparseMoe's layout is not the architecture's: a module
// with forward((B, T, C)) -> (B, T, C) that records into router_stats() as SparseMoe does.
using MoeFactory = std::function<torch::nn::AnyModule(const LmConfig&)>;

struct ExpertMlpImpl : torch::nn::Module {
  // ADAPTABLE: its layers take LoRA adapters (a shared expert's, plain linear layers in transformers 5).
  ExpertMlpImpl(int64_t d_model, int64_t d_ff, const MoeNames& names, bool adaptable = false);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x)): (N, C) -> (N, C)

  Linear gate{nullptr}, up{nullptr}, down{nullptr};  // (C, F), (C, F), (F, C), no biases
};
TORCH_MODULE(ExpertMlp);

// The routed experts' output (N, C) for tokens X (N, C): each token's rows through the experts
// CHOSEN (N, K) for it, times its WEIGHTS (N, K), summed; EXPERT(e, rows (M, C)) -> (M, C) runs
// expert e on the rows routed to it, grouped by expert (one count per expert read on the host),
// in expert order as transformers runs them. PROBS (N, E) fp32, the router's softmax over every
// expert, goes to router_stats() for the load-balancing loss.
torch::Tensor dispatch_to_experts(const torch::Tensor& x, const torch::Tensor& chosen, const torch::Tensor& weights,
                                  const torch::Tensor& probs, const std::function<torch::Tensor(int64_t, const torch::Tensor&)>& expert);

struct SparseMoeImpl : torch::nn::Module {
  SparseMoeImpl(const LmConfig& c, const MoeNames& names);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)

  int64_t top_k;
  bool normalise;             // norm_topk_prob
  Linear gate{nullptr};       // the router: (C, E), no bias
  torch::nn::ModuleList experts{nullptr};
  // Qwen2-MoE (LmConfig::shared_expert_d_ff > 0): an expert every token takes, its output times
  // sigmoid(shared_expert_gate(x)), added to the routed experts'.
  ExpertMlp shared_expert{nullptr};   // (C, S), (C, S), (S, C)
  Linear shared_expert_gate{nullptr};  // (C, 1), no bias
};
TORCH_MODULE(SparseMoe);

}  // namespace lofi::model
