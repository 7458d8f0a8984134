#include "lofi/model/linear.h"

#include <ATen/autocast_mode.h>

#include <cmath>

#include "lofi/error.h"
#include "lofi/kernels/fp32_products.h"
#include "lofi/kernels/linear_relu.h"
#include "lofi/kernels/upcast_linear.h"
#include "lofi/model/blocks.h"
#include "lofi/model/deferred_weights.h"

namespace lofi::model {

namespace {

// X in the weight's dtype for the base product, outside autocast (under autocast the matmul picks
// its own dtype); the result back in X's dtype, so a bf16 base leaves an fp32 stream fp32.
bool needs_cast(const torch::Tensor& x, const torch::Tensor& w) {
  return x.scalar_type() != w.scalar_type() && !at::autocast::is_autocast_enabled(x.device().type());
}

}  // namespace

torch::Tensor AdaptableLinearImpl::base_product(const torch::Tensor& x) const {
  const bool cast = needs_cast(x, weight);
  const torch::Tensor xw = cast ? x.to(weight.scalar_type()) : x;  // X in the weight's dtype
  const torch::Tensor y = kernels::linear_wants_fp32_products(xw, weight) ? kernels::linear(xw, weight_out_in(), bias) : base(xw);
  return cast ? y.to(x.scalar_type()) : y;
}

torch::Tensor AdaptableLinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = base_product(x);
  if (!has_lora()) return y;
  // PEFT's order: dropout on the input, then A and B, in the adapter's dtype.
  const torch::Tensor& a = lora_A->weight;
  const bool dropout = lora_dropout > 0 && is_training();
  const bool upcast = x.scalar_type() != a.scalar_type() && !at::autocast::is_autocast_enabled(x.device().type());
  // Without dropout, a bf16 stream reaches fp32 A through upcast_linear, which keeps the bf16 input
  // (kernels/upcast_linear.h) rather than an fp32 copy of it per adapter.
  const bool low_precision_x = x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kHalf;
  const bool keep_low_precision_input = upcast && !dropout && low_precision_x && a.scalar_type() == torch::kFloat;
  torch::Tensor h = upcast && !keep_low_precision_input ? x.to(a.scalar_type()) : x;
  h = dropout ? torch::dropout(h, lora_dropout, true) : h;
  // The scaling multiplies A's (..., r) output rather than B's (..., out): the same product up to
  // rounding, over r instead of out numbers each way.
  const torch::Tensor low = (keep_low_precision_input ? kernels::upcast_linear(h, a) : kernels::linear(h, a)) * lora_scaling;  // (..., r)
  const torch::Tensor& b = lora_B->weight;
  const bool autocast = at::autocast::is_autocast_enabled(y.device().type());
  if (!autocast && low.scalar_type() != y.scalar_type()) return y + kernels::linear(low, b).to(y.scalar_type());
  // Under bf16 autocast on a CPU without fast bf16 products: B's product in fp32, added after.
  if (kernels::autocast_wants_fp32_products(y.device().type())) return y + kernels::linear(low, b);
  // B's product added to the base's inside the matrix product (addmm, beta = 1): no (..., out)
  // delta tensor and no separate pass to add it. Under autocast addmm runs in autocast's dtype, as
  // B's linear and the sum did.
  const int64_t r = low.size(-1);
  return torch::addmm(y.reshape({-1, y.size(-1)}), low.reshape({-1, r}), b.t()).view(y.sizes());  // (N, out) -> (..., out)
}

torch::Tensor AdaptableLinearImpl::forward_activated(const torch::Tensor& x, const std::string& activation) {
  // With an adapter its delta joins the product before the activation; a base in another dtype
  // than X outside autocast takes forward's casts.
  if (activation == "relu" && !has_lora() && bias.defined() && !needs_cast(x, weight) &&
      !kernels::linear_wants_fp32_products(x, weight))
    return kernels::linear_relu(x, weight, bias, fan_in_fan_out());
  return activate(forward(x), activation);
}

void AdaptableLinearImpl::attach_lora(int64_t rank, double scaling, double dropout) {
  if (rank <= 0) fail("a LoRA adapter needs rank >= 1, found ", rank);
  auto linear = [](int64_t in, int64_t out) { return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)); };
  if (has_lora()) {
    lora_A = replace_module("lora_A", linear(in_features(), rank));
    lora_B = replace_module("lora_B", linear(rank, out_features()));
  } else {
    lora_A = register_module("lora_A", linear(in_features(), rank));
    lora_B = register_module("lora_B", linear(rank, out_features()));
  }
  lora_A->to(weight.device(), torch::kFloat);  // adapters are fp32 whatever the base's dtype
  lora_B->to(weight.device(), torch::kFloat);
  lora_scaling = scaling;
  lora_dropout = dropout;
}

torch::Tensor AdaptableLinearImpl::lora_delta() const {
  if (!has_lora()) fail("lora_delta: the layer has no adapter");
  torch::NoGradGuard no_grad;
  return torch::matmul(lora_B->weight.to(torch::kFloat), lora_A->weight.to(torch::kFloat)) * lora_scaling;  // (out, r) @ (r, in)
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) {
  weight = register_parameter("weight", torch::empty({out, in}, parameter_options()));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out}, parameter_options()));
  // torch::nn::Linear's reset_parameters: Kaiming-uniform weight, uniform bias of 1/sqrt(in). On
  // the meta device, drawn into scratch tensors where the scope keeps the random stream's draws;
  // none at all where the model sets every weight next (NoInitDraws).
  if (init_draws_skipped()) return;
  torch::Tensor w = weight, b = bias;
  if (MetaParameters::active()) {
    w = MetaParameters::scratch({out, in}, weight.scalar_type());
    if (with_bias) b = torch::empty({out});  // small
  }
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(w, std::sqrt(5.0));
  if (with_bias) {
    const double bound = in > 0 ? 1.0 / std::sqrt(static_cast<double>(in)) : 0.0;
    torch::nn::init::uniform_(b, -bound, bound);
  }
}

torch::Tensor LinearImpl::base(const torch::Tensor& x) const { return torch::linear(x, weight, bias); }

Conv1DImpl::Conv1DImpl(int64_t in, int64_t out) {
  weight = register_parameter("weight", torch::empty({in, out}, parameter_options()));
  bias = register_parameter("bias", torch::zeros({out}, parameter_options()));
}

torch::Tensor Conv1DImpl::base(const torch::Tensor& x) const {
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = weight.size(1);
  torch::Tensor y = torch::addmm(bias, x.reshape({-1, weight.size(0)}), weight);  // (N, in) @ (in, out) -> (N, out)
  return y.view(shape);                                                          // (N, out) -> (..., out)
}

}  // namespace lofi::model
