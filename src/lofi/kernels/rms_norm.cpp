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

}  // namespace

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (weight.dim() != 1 || x.dim() < 1 || x.size(-1) != weight.size(0) || x.scalar_type() != torch::kFloat ||
      weight.scalar_type() != torch::kFloat || x.device() != weight.device())
    fail("rms_norm: expected fp32 x (..., C) and weight (C) on one device; found x ", x.sizes(), " ", x.scalar_type(), " on ",
         x.device(), ", weight ", weight.sizes(), " ", weight.scalar_type(), " on ", weight.device());
  if (x.is_cpu() && avx2::avx2_available() && x.numel() > 0) return RmsNormFunction::apply(x, weight, eps);
  return torch::rms_norm(x, {weight.size(0)}, weight, eps);
}

}  // namespace lofi::kernels
