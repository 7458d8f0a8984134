#include "lofi/kernels/upcast_linear.h"

#include "lofi/error.h"

namespace lofi::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct UpcastLinear : torch::autograd::Function<UpcastLinear> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight) {
    ctx->save_for_backward({x, weight});
    return torch::linear(x.to(weight.scalar_type()), weight);  // (..., r)
  }

  // As autograd differentiates linear(x.to(fp32), W): the products in fp32, the input's gradient
  // cast back to its dtype (the cast's backward).
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1];
    const int64_t r = weight.size(0), in = weight.size(1);
    const torch::Tensor g = grad[0].reshape({-1, r});  // (N, r)
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) dx = g.mm(weight).view(x.sizes()).to(x.scalar_type());                // (N, r) @ (r, in)
    if (ctx->needs_input_grad(1)) dw = g.t().mm(x.reshape({-1, in}).to(weight.scalar_type()));         // (r, N) @ (N, in)
    return {dx, dw};
  }
};

}  // namespace

torch::Tensor upcast_linear(const torch::Tensor& x, const torch::Tensor& weight) {
  const c10::ScalarType t = x.scalar_type();
  if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1) || weight.scalar_type() != torch::kFloat ||
      (t != torch::kBFloat16 && t != torch::kHalf))
    fail("upcast_linear: expected x (..., in) in bf16 or fp16 and an fp32 weight (r, in); found x ", x.sizes(), " ",
         t, ", weight ", weight.sizes(), " ", weight.scalar_type());
  return UpcastLinear::apply(x, weight);
}

}  // namespace lofi::kernels
