// The routers' load-balancing loss of a mixture of experts (LmConfig::output_router_logits), as
// transformers' load_balancing_loss_func computes it (Switch Transformer's, eq. 4-6) over every
// layer's routing together: with f_e the share of the (token, slot) choices that went to expert e
// and P_e the mean router probability of e, both over all layers' tokens,
//   loss = num_experts * sum_e f_e * P_e.
// Each mixture of experts records its layer's two sums (moe.h's dispatch_to_experts) into the
// RouterStats of the scope that collects them (CausalLmImpl::loss while training); a checkpointed block (checkpointing.h) hands
// its layer's probability sum on as an output of its own, so the gradient reaches the router
// through the recomputation too. No host synchronisation.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace lofi::model {

struct RouterStats {
  std::vector<torch::Tensor> probability_sums;  // per layer (E) fp32: sum over tokens of the router's softmax; differentiable
  std::vector<torch::Tensor> choices;           // per layer (E) fp32: (token, slot) pairs routed to each expert
  int64_t tokens = 0;                           // rows routed, all layers together
  // (N) fp32, 1 for each routed row the loss counts and 0 for padding (transformers' attention
  // mask); undefined: every row. Set by whoever opens the scope, before the forward pass.
  torch::Tensor counted;
};

// While alive, the mixtures of experts of this thread's forward passes record into STATS.
class RouterStatsScope {
 public:
  explicit RouterStatsScope(RouterStats* stats);
  ~RouterStatsScope();
  RouterStatsScope(const RouterStatsScope&) = delete;
  RouterStatsScope& operator=(const RouterStatsScope&) = delete;

 private:
  RouterStats* previous_;
};

// The scope's RouterStats, or null outside one.
RouterStats* router_stats();

// The load-balancing loss of STATS (a 0-dim fp32 tensor), differentiable in the routers; over the
// rows STATS.counted keeps where it is defined.
torch::Tensor load_balancing_loss(const RouterStats& stats);

}  // namespace lofi::model
