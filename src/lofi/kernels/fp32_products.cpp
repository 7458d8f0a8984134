#include "lofi/kernels/fp32_products.h"

#include <ATen/autocast_mode.h>

#include "lofi/error.h"
#include "lofi/kernels/autocast_operand.h"

namespace lofi::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

torch::Tensor fp32(const torch::Tensor& t) { return t.to(torch::kFloat); }

bool low_precision(c10::ScalarType t) { return t == torch::kBFloat16 || t == torch::kHalf; }

struct Fp32ProductsLinear : torch::autograd::Function<Fp32ProductsLinear> {
  // BIAS: optional, as autograd takes an absent input.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const std::optional<torch::Tensor>& bias) {
    NoCpuAutocast no_autocast;
    ctx->save_for_backward({x, weight});
    ctx->saved_data["bias"] = bias.has_value();
    const torch::Tensor b = bias ? fp32(*bias) : torch::Tensor();
    return torch::linear(fp32(x), fp32(weight), b).to(x.scalar_type());  // (..., out), rounded once
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    NoCpuAutocast no_autocast;
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1];
    const int64_t out = weight.size(0), in = weight.size(1);
    const torch::Tensor g = fp32(grad[0]).reshape({-1, out});  // (N, out)
    torch::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) dx = g.mm(fp32(weight)).view(x.sizes()).to(x.scalar_type());                  // (N, out) @ (out, in)
    if (ctx->needs_input_grad(1)) dw = g.t().mm(fp32(x).reshape({-1, in})).to(weight.scalar_type());           // (out, N) @ (N, in)
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) db = g.sum(0).to(x.scalar_type());        // (out)
    return {dx, dw, db};
  }
};

}  // namespace

// oneDNN's bf16 and fp16 products, which ATen takes where these are present (its
// mkldnn_bf16_device_check); elsewhere on x86 its reference loop runs.
bool cpu_has_fast_low_precision_products() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool fast =
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return fast;
#else
  return true;  // other processors: ATen's own choice
#endif
}

bool wants_fp32_products(const torch::Tensor& weight) {
  return weight.is_cpu() && low_precision(weight.scalar_type()) && !cpu_has_fast_low_precision_products();
}

bool autocast_wants_fp32_products(c10::DeviceType device) {
  return device == c10::DeviceType::CPU && at::autocast::is_autocast_enabled(device) &&
         low_precision(at::autocast::get_autocast_dtype(device)) && !cpu_has_fast_low_precision_products();
}

bool linear_wants_fp32_products(const torch::Tensor& x, const torch::Tensor& weight) {
  const c10::DeviceType device = x.device().type();
  return at::autocast::is_autocast_enabled(device) ? autocast_wants_fp32_products(device) : wants_fp32_products(weight);
}

torch::Tensor linear_with_fp32_products(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1) || (bias.defined() && bias.sizes() != weight.sizes().slice(0, 1)) ||
      x.scalar_type() != weight.scalar_type() || (bias.defined() && bias.scalar_type() != weight.scalar_type()))
    fail("linear_with_fp32_products: expected x (..., in), weight (out, in) and bias (out) of one dtype; found x ", x.sizes(), " ",
         x.scalar_type(), ", weight ", weight.sizes(), " ", weight.scalar_type(),
         bias.defined() ? cat(", bias ", bias.sizes(), " ", bias.scalar_type()) : std::string(", no bias"));
  return Fp32ProductsLinear::apply(x, weight, bias.defined() ? std::optional<torch::Tensor>(bias) : std::nullopt);
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!linear_wants_fp32_products(x, weight)) return torch::linear(x, weight, bias);
  const c10::DeviceType device = x.device().type();
  if (!at::autocast::is_autocast_enabled(device)) return linear_with_fp32_products(x, weight, bias);
  // autocast's casts for linear: every operand to its dtype, leaf weights through its cache
  return linear_with_fp32_products(autocast_operand(x), autocast_operand(weight), autocast_operand(bias));
}

torch::Tensor attention_with_fp32_products(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const Attention& attend) {
  const c10::DeviceType device = q.device().type();
  const bool autocast = at::autocast::is_autocast_enabled(device);
  if (autocast ? !autocast_wants_fp32_products(device) : !wants_fp32_products(q)) return attend(q, k, v);
  // The heads rounded to the products' dtype (autocast's casts where it is on), then fp32.
  const c10::ScalarType dtype = autocast ? at::autocast::get_autocast_dtype(device) : q.scalar_type();
  auto operand = [&](const torch::Tensor& t) { return fp32(t.to(dtype)); };
  NoCpuAutocast no_autocast;
  return attend(operand(q), operand(k), operand(v)).to(dtype);
}

torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const std::optional<torch::Tensor>& mask, double dropout, bool is_causal,
                                           std::optional<double> scale, bool grouped) {
  return attention_with_fp32_products(q, k, v, [&](const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& c) {
    return torch::scaled_dot_product_attention(a, b, c, mask, dropout, is_causal, scale, grouped);
  });
}

torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, torch::IntArrayRef stride) {
  const c10::DeviceType device = x.device().type();
  if (!autocast_wants_fp32_products(device)) return torch::conv2d(x, weight, bias, stride);
  const c10::ScalarType dtype = at::autocast::get_autocast_dtype(device);
  auto operand = [&](const torch::Tensor& t) { return t.defined() ? fp32(autocast_operand(t)) : t; };
  NoCpuAutocast no_autocast;
  return torch::conv2d(operand(x), operand(weight), operand(bias), stride).to(dtype);
}

}  // namespace lofi::kernels
