#include "lofi/model/gpt_oss_moe.h"

#include "lofi/kernels/fp32_products.h"
#include "lofi/model/deferred_weights.h"
#include "lofi/model/moe.h"

namespace lofi::model {

GptOssExpertsImpl::GptOssExpertsImpl(const LmConfig& c) : limit(c.swiglu_limit), alpha(c.swiglu_alpha) {
  const int64_t E = c.num_experts, C = c.d_model, F = c.expert_width();
  // On the meta device in a fully sharded start (model/deferred_weights.h), as lofi's Linear
  // layers: the experts are most of the model, and no worker should hold them whole.
  const torch::TensorOptions options = parameter_options();
  gate_up_proj = register_parameter("gate_up_proj", torch::zeros({E, C, 2 * F}, options));
  gate_up_proj_bias = register_parameter("gate_up_proj_bias", torch::zeros({E, 2 * F}, options));
  down_proj = register_parameter("down_proj", torch::zeros({E, F, C}, options));
  down_proj_bias = register_parameter("down_proj_bias", torch::zeros({E, C}, options));
}

std::vector<std::vector<torch::Tensor>> GptOssExpertsImpl::expert_weights() const {
  // Split once: each expert's slice taken by indexing would send a whole (E, ...) gradient back
  // for every expert; unbind's backward stacks the experts' gradients once.
  std::vector<std::vector<torch::Tensor>> out;
  for (const torch::Tensor& w : {gate_up_proj, gate_up_proj_bias, down_proj, down_proj_bias}) out.push_back(w.unbind(0));
  return out;
}

torch::Tensor GptOssExpertsImpl::forward(int64_t e, const torch::Tensor& x, const std::vector<std::vector<torch::Tensor>>& w) const {
  // Through kernels::linear: autocast's casts, and fp32 products on a CPU slow in bf16 (kernels/fp32_products.h).
  const torch::Tensor gate_up = kernels::linear(x, w[0][e].t(), w[1][e]);         // (M, C) x (C, 2F) + (2F) -> (M, 2F)
  const torch::Tensor gate = gate_up.slice(-1, 0, {}, 2).clamp_max(limit);        // even columns: (M, F)
  const torch::Tensor up = gate_up.slice(-1, 1, {}, 2).clamp(-limit, limit);      // odd columns: (M, F)
  const torch::Tensor glu = gate * torch::sigmoid(gate * alpha);
  return kernels::linear((up + 1) * glu, w[2][e].t(), w[3][e]);                  // (M, F) x (F, C) + (C) -> (M, C)
}

GptOssMoeImpl::GptOssMoeImpl(const LmConfig& c) : top_k(c.experts_per_token) {
  router = register_module("router", Linear(c.d_model, c.num_experts, /*with_bias=*/true));
  router->adaptable = false;  // a bare parameter pair in transformers: PEFT's "all-linear" passes it by
  experts = register_module("experts", GptOssExperts(c));
}

torch::Tensor GptOssMoeImpl::forward(const torch::Tensor& input) {
  const int64_t C = input.size(-1);
  const torch::Tensor x = input.reshape({-1, C});  // (B, T, C) -> (N, C); the outputs summed in its dtype, as transformers sums them
  const torch::Tensor logits = router(x);          // (N, E)
  auto [top, chosen] = logits.topk(top_k, -1);                                // (N, K) each
  const torch::Tensor weights = torch::softmax(top, -1, torch::kFloat).to(logits.scalar_type());  // over the chosen alone
  const auto w = experts->expert_weights();
  const torch::Tensor out = dispatch_to_experts(x, chosen, weights, torch::softmax(logits, -1, torch::kFloat),
                                                [&](int64_t e, const torch::Tensor& rows) { return experts->forward(e, rows, w); });
  return out.reshape(input.sizes());
}

}  // namespace lofi::model
