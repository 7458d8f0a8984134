#include "lofi/kernels/linear_relu.h"

#include "lofi/error.h"
#include "lofi/kernels/autocast_operand.h"

namespace lofi::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The (in, out) operand of the product, whatever the storage layout.
torch::Tensor in_out_view(const torch::Tensor& weight, bool in_out) { return in_out ? weight : weight.t(); }

struct LinearReluFunction : torch::autograd::Function<LinearReluFunction> {
  // X2 (N, in), WEIGHT in its storage layout, BIAS (out) -> (N, out).
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x2, const torch::Tensor& weight,
                               const torch::Tensor& bias, bool in_out) {
    torch::Tensor y = at::_addmm_activation(bias, x2, in_out_view(weight, in_out), 1, 1, /*use_gelu=*/false);
    ctx->save_for_backward({x2, weight, y});
    ctx->saved_data["in_out"] = in_out;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x2 = saved[0], &weight = saved[1], &y = saved[2];
    const bool in_out = ctx->saved_data["in_out"].toBool();
    // relu's own backward: the gradient where the output is positive, zero elsewhere.
    const torch::Tensor g = at::threshold_backward(grad[0].to(y.scalar_type()), y, 0);  // (N, out)
    torch::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) dx = g.mm(in_out_view(weight, in_out).t());  // (N, out) @ (out, in)
    if (ctx->needs_input_grad(1)) dw = in_out ? x2.t().mm(g) : g.t().mm(x2);   // (in, out) or (out, in)
    if (ctx->needs_input_grad(2)) db = g.sum(0);                                // (out)
    return {dx, dw, db, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor linear_relu(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, bool in_out) {
  if (weight.dim() != 2) fail("linear_relu: expected a 2-d weight, found ", weight.sizes());
  const int64_t in = weight.size(in_out ? 0 : 1), out = weight.size(in_out ? 1 : 0);
  if (x.dim() < 1 || x.size(-1) != in || !bias.defined() || bias.dim() != 1 || bias.size(0) != out)
    fail("linear_relu: expected x (..., ", in, ") and bias (", out, ") for weight ", weight.sizes(), "; found x ", x.sizes(),
         " and bias ", bias.defined() ? c10::str(bias.sizes()) : std::string("none"));
  // as autocast casts linear's operands (weights from its cache) where it is on
  const torch::Tensor xc = autocast_operand(x), w = autocast_operand(weight), b = autocast_operand(bias);
  if (xc.scalar_type() != w.scalar_type() || w.scalar_type() != b.scalar_type())
    fail("linear_relu: x, weight and bias must share a dtype; found ", xc.scalar_type(), ", ", w.scalar_type(), " and ",
         b.scalar_type());
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = out;
  const torch::Tensor y = LinearReluFunction::apply(xc.reshape({-1, in}), w, b, in_out);  // (..., in) -> (N, in) -> (N, out)
  return y.view(shape);                                                                      // (N, out) -> (..., out)
}

torch::Tensor linear_relu_reference(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                    bool in_out) {
  return torch::relu(torch::linear(x, in_out ? weight.t() : weight, bias));
}

}  // namespace lofi::kernels
