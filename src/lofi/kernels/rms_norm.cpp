#include "lofi/kernels/rms_norm.h"

#include <ATen/Parallel.h>

#include "lofi/error.h"
#include "lofi/kernels/cpu_avx2.h"

namespace lofi::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kRowsPerChunk = 64;  // rows per CPU task; the weight's gradient is summed per chunk

struct RmsNormFunction : torch::autograd::Function<RmsNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight, double eps) {
    const torch::Tensor xc = x.contiguous(), w = weight.contiguous();
    const int64_t width = w.size(0), rows = xc.numel() / width;
    torch::Tensor y = torch::empty_like(xc);
    torch::Tensor rstd = torch::empty({rows}, xc.options());  // (rows): 1 / sqrt(mean(x^2) + eps)
    const float* xp = xc.const_data_ptr<float>();
    const float* wp = w.const_data_ptr<float>();
    float* yp = y.data_ptr<float>();
    float* rp = rstd.data_ptr<float>();
    at::parallel_for(0, rows, kRowsPerChunk, [&](int64_t begin, int64_t end) {
      avx2::rms_norm_forward(xp + begin * width, wp, yp + begin * width, rp + begin, end - begin, width, static_cast<float>(eps));
    });
    ctx->save_for_backward({xc, w, rstd});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    const torch::Tensor dy = grad[0].to(torch::kFloat).contiguous();
    const int64_t width = w.size(0), rows = x.numel() / width;
    const bool want_dx = ctx->needs_input_grad(0), want_dw = ctx->needs_input_grad(1);
    torch::Tensor dx = want_dx ? torch::empty_like(x) : torch::Tensor();
    // The weight's gradient, one partial sum per chunk of rows, added up in chunk order below:
    // the same result whatever the thread count.
    const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
    torch::Tensor partial = want_dw ? torch::zeros({chunks, width}, x.options()) : torch::Tensor();  // (chunks, C)
    const float* dyp = dy.const_data_ptr<float>();
    const float* xp = x.const_data_ptr<float>();
    const float* wp = w.const_data_ptr<float>();
    const float* rp = rstd.const_data_ptr<float>();
    float* dxp = want_dx ? dx.data_ptr<float>() : nullptr;
    float* pp = want_dw ? partial.data_ptr<float>() : nullptr;
    at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
      for (int64_t c = first; c < last; ++c) {
        const int64_t begin = c * kRowsPerChunk, n = std::min(kRowsPerChunk, rows - begin);
        avx2::rms_norm_backward(dyp + begin * width, xp + begin * width, wp, rp + begin,
                                dxp ? dxp + begin * width : nullptr, pp ? pp + c * width : nullptr, n, width);
      }
    });
    torch::Tensor dw;
    if (want_dw) {
      dw = partial[0].clone();  // (C)
      float* d = dw.data_ptr<float>();
      for (int64_t c = 1; c < chunks; ++c)
        for (int64_t i = 0; i < width; ++i) d[i] += pp[c * width + i];
    }
    return {want_dx ? dx.view(grad[0].sizes()) : torch::Tensor(), dw, torch::Tensor()};
  }
};

struct LowPrecisionRmsNormFunction : torch::autograd::Function<LowPrecisionRmsNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight, double eps) {
    const torch::Tensor h = x.to(torch::kFloat);                                          // (..., C)
    const torch::Tensor rstd = torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);  // (..., 1)
    ctx->save_for_backward({x, weight, rstd});
    return weight * (h * rstd).to(x.scalar_type());
  }

  // Autograd's chain through the forward's ops, in their dtypes: y = w * n, n = z.to(x's dtype),
  // z = h * rstd, rstd = rsqrt(mean(h^2) + eps), h = x.to(fp32).
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    const torch::Tensor& g = grad[0];                                                    // (..., C)
    const torch::Tensor h = x.to(torch::kFloat);                                         // (..., C)
    torch::Tensor dw;
    if (ctx->needs_input_grad(1)) dw = (g * (h * rstd).to(x.scalar_type())).sum_to_size(w.sizes()).to(w.scalar_type());  // (C)
    if (!ctx->needs_input_grad(0)) return {torch::Tensor(), dw, torch::Tensor()};
    const torch::Tensor dz = (g * w).to(x.scalar_type()).to(torch::kFloat);  // d n in n's dtype, then d z
    const torch::Tensor d_rstd = (dz * h).sum(-1, /*keepdim=*/true);        // (..., 1)
    const torch::Tensor d_mean = d_rstd * (-0.5) * rstd.pow(3);             // (..., 1)
    const double width = static_cast<double>(h.size(-1));
    const torch::Tensor dh = dz * rstd + d_mean / width * (2 * h);         // (..., C)
    return {dh.to(x.scalar_type()), dw, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor rms_norm_low_precision(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const c10::ScalarType t = x.scalar_type();
  if (weight.dim() != 1 || x.dim() < 1 || x.size(-1) != weight.size(0) || (t != torch::kBFloat16 && t != torch::kHalf) ||
      !weight.is_floating_point() || x.device() != weight.device())
    fail("rms_norm_low_precision: expected bf16 or fp16 x (..., C) and a floating weight (C) on one device; found x ",
         x.sizes(), " ", t, " on ", x.device(), ", weight ", weight.sizes(), " ", weight.scalar_type(), " on ", weight.device());
  return LowPrecisionRmsNormFunction::apply(x, weight, eps);
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (weight.dim() != 1 || x.dim() < 1 || x.size(-1) != weight.size(0) || x.scalar_type() != torch::kFloat ||
      weight.scalar_type() != torch::kFloat || x.device() != weight.device())
    fail("rms_norm: expected fp32 x (..., C) and weight (C) on one device; found x ", x.sizes(), " ", x.scalar_type(), " on ",
         x.device(), ", weight ", weight.sizes(), " ", weight.scalar_type(), " on ", weight.device());
  if (x.is_cpu() && avx2::avx2_available() && x.numel() > 0) return RmsNormFunction::apply(x, weight, eps);
  return torch::rms_norm(x, {weight.size(0)}, weight, eps);
}

}  // namespace lofi::kernels
