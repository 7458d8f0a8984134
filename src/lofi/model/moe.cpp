#include "lofi/model/moe.h"

#include "lofi/kernels/autocast_operand.h"
#include "lofi/kernels/swiglu.h"
#include "lofi/model/router_stats.h"

namespace lofi::model {

namespace {

// A layer LoRA never adapts (moe.h: neither does PEFT there).
Linear unadapted(int64_t in, int64_t out) {
  Linear layer(in, out, /*with_bias=*/false);
  layer->adaptable = false;
  return layer;
}

}  // namespace

ExpertMlpImpl::ExpertMlpImpl(int64_t d_model, int64_t d_ff, const MoeNames& names, bool adaptable) {
  auto layer = [adaptable](int64_t in, int64_t out) { return adaptable ? Linear(in, out, /*with_bias=*/false) : unadapted(in, out); };
  gate = register_module(names.gate, layer(d_model, d_ff));
  up = register_module(names.up, layer(d_model, d_ff));
  down = register_module(names.down, layer(d_ff, d_model));
}

torch::Tensor ExpertMlpImpl::forward(const torch::Tensor& input) {
  const torch::Tensor x = kernels::autocast_operand(input);  // one copy for gate and up
  return down(kernels::swiglu(gate(x), up(x)));
}

SparseMoeImpl::SparseMoeImpl(const LmConfig& c, const MoeNames& names) : top_k(c.experts_per_token), normalise(c.norm_topk_prob) {
  const int64_t width = c.moe_d_ff > 0 ? c.moe_d_ff : c.d_ff;
  gate = register_module("gate", unadapted(c.d_model, c.num_experts));
  experts = register_module("experts", torch::nn::ModuleList());
  for (int64_t e = 0; e < c.num_experts; ++e) experts->push_back(ExpertMlp(c.d_model, width, names));
  if (c.shared_expert_d_ff > 0) {
    shared_expert = register_module("shared_expert", ExpertMlp(c.d_model, c.shared_expert_d_ff, MoeNames{}, /*adaptable=*/true));
    shared_expert_gate = register_module("shared_expert_gate", Linear(c.d_model, 1, /*with_bias=*/false));
  }
}

torch::Tensor dispatch_to_experts(const torch::Tensor& x, const torch::Tensor& chosen, const torch::Tensor& weights,
                                  const torch::Tensor& probs, const std::function<torch::Tensor(int64_t, const torch::Tensor&)>& expert) {
  const int64_t E = probs.size(-1), top_k = chosen.size(-1);
  // The (token, slot) pairs grouped by expert: one count per expert read on the host (one wait a
  // layer, where transformers' loop waits once an expert), then each expert on its tokens.
  const torch::Tensor flat = chosen.reshape({-1});                                  // (N K)
  const torch::Tensor order = flat.argsort(/*stable=*/true);                        // (N K), by expert
  const torch::Tensor tokens = order.div(top_k, "floor");                           // (N K)
  const torch::Tensor scale = weights.reshape({-1}).index_select(0, order).unsqueeze(-1);  // (N K, 1)
  const torch::Tensor routed = torch::bincount(flat, {}, E);                        // (E)
  if (RouterStats* stats = router_stats()) {  // for the load-balancing loss, over the rows it counts
    const torch::Tensor& counted = stats->counted;  // (N) or undefined
    stats->probability_sums.push_back(counted.defined() ? (probs * counted.unsqueeze(-1)).sum(0) : probs.sum(0));
    stats->choices.push_back(counted.defined() ? torch::bincount(flat, counted.repeat_interleave(top_k), E).to(torch::kFloat)
                                               : routed.to(torch::kFloat));
    stats->tokens += x.size(0);
  }
  const torch::Tensor counts = routed.cpu();
  const int64_t* count = counts.data_ptr<int64_t>();
  torch::Tensor out = torch::zeros_like(x);
  // While gradients are taken, an expert no token reached runs on none: its gradient is then zeros,
  // not absent, so a node's workers all-reduce the same parameters every step (transformers skips
  // it, and PyTorch's AdamW then skips it too; lofi's moves it by its momentum and weight decay).
  const bool every = torch::GradMode::is_enabled();
  for (int64_t e = 0, start = 0; e < E; start += count[e], ++e) {
    if (count[e] == 0 && !every) continue;
    const torch::Tensor mine = tokens.narrow(0, start, count[e]);  // (M)
    const torch::Tensor y = expert(e, x.index_select(0, mine)) * scale.narrow(0, start, count[e]);
    out.index_add_(0, mine, y.to(out.scalar_type()));  // (M, C) into (N, C)
  }
  return out;
}

torch::Tensor SparseMoeImpl::forward(const torch::Tensor& input) {
  const int64_t C = input.size(-1);
  const torch::Tensor x = input.reshape({-1, C});  // (B, T, C) -> (N, C)
  const torch::Tensor logits = gate(x);            // (N, E)
  const torch::Tensor probs = torch::softmax(logits, -1, torch::kFloat);  // (N, E)
  auto [weights, chosen] = probs.topk(top_k, -1);  // (N, K) each
  if (normalise) weights = weights / weights.sum(-1, /*keepdim=*/true);
  torch::Tensor out = dispatch_to_experts(x, chosen, weights.to(logits.scalar_type()), probs, [&](int64_t e, const torch::Tensor& rows) {
    return experts->ptr<ExpertMlpImpl>(e)->forward(rows);
  });
  if (shared_expert) out = out + torch::sigmoid(shared_expert_gate(x)) * shared_expert->forward(x);  // (N, 1) * (N, C)
  return out.reshape(input.sizes());
}

}  // namespace lofi::model
