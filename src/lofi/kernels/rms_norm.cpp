#include "lofi/kernels/rms_norm.h"

#include <ATen/Parallel.h>

#include "lofi/error.h"
#include "lofi/kernels/cpu_avx2.h"
#include "lofi/kernels/device_launch.h"
#include "lofi/kernels/fused_add_norm.h"
#include "lofi/kernels/row_partials.h"

namespace lofi::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct Normed {
  torch::Tensor sum, y, rstd;
};

// The forward pass over rows, on a CPU with AVX2 or (with a residual) on a GPU through lofi's
// kernel: Y = rms_norm(X [+ RESIDUAL]) and RSTD (rows), and the sum where RESIDUAL is defined
// (fp32 on a CPU; fp32, bf16 or fp16 on a GPU). X, RESIDUAL and W contiguous.
Normed rows_forward(const torch::Tensor& x, const torch::Tensor& residual, const torch::Tensor& w, double eps) {
  const int64_t width = w.size(0), rows = x.numel() / width;
  Normed out{residual.defined() ? torch::empty_like(x) : torch::Tensor(), torch::empty_like(x),
             torch::empty({rows}, x.options())};  // rstd (rows): 1 / sqrt(mean(h^2) + eps)
  const float* xp = x.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  float* hp = out.sum.defined() ? out.sum.data_ptr<float>() : nullptr;
  float* yp = out.y.data_ptr<float>();
  float* rp = out.rstd.data_ptr<float>();
  if (x.is_cuda()) {
    launch_on(x, "add_rms_norm", [&](void* stream) {
      return cuda::add_rms_norm_forward(cuda_dtype(residual, "add_rms_norm"), xp, residual.const_data_ptr(), wp, hp, yp, rp, rows,
                                        width, static_cast<float>(eps), stream);
    });
    return out;
  }
  const float* sp = residual.defined() ? residual.const_data_ptr<float>() : nullptr;
  at::parallel_for(0, rows, kRowsPerChunk, [&](int64_t begin, int64_t end) {
    avx2::rms_norm_forward(xp + begin * width, sp ? sp + begin * width : nullptr, wp, hp ? hp + begin * width : nullptr,
                           yp + begin * width, rp + begin, end - begin, width, static_cast<float>(eps));
  });
  return out;
}

// The backward pass over rows, on the same devices: DX (with DSUM added where defined) and DW, each
// where wanted, from the norm's input X, W and RSTD. All fp32 and contiguous.
std::pair<torch::Tensor, torch::Tensor> rows_backward(const torch::Tensor& dy, const torch::Tensor& dsum, const torch::Tensor& x,
                                                      const torch::Tensor& w, const torch::Tensor& rstd, bool want_dx,
                                                      bool want_dw) {
  const int64_t width = w.size(0), rows = x.numel() / width;
  torch::Tensor dx = want_dx ? torch::empty_like(x) : torch::Tensor();
  const int64_t chunks = row_chunks(x, rows);
  torch::Tensor partial = want_dw ? torch::zeros({chunks, width}, x.options()) : torch::Tensor();  // (chunks, C): the weight's gradient
  const float* dyp = dy.const_data_ptr<float>();
  const float* dsp = dsum.defined() ? dsum.const_data_ptr<float>() : nullptr;
  const float* xp = x.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  const float* rp = rstd.const_data_ptr<float>();
  float* dxp = want_dx ? dx.data_ptr<float>() : nullptr;
  float* pp = want_dw ? partial.data_ptr<float>() : nullptr;
  if (x.is_cuda()) {
    launch_on(x, "rms_norm backward", [&](void* stream) {
      return cuda::rms_norm_backward(dyp, dsp, xp, wp, rp, dxp, pp, static_cast<int>(chunks), rows, width, stream);
    });
    return {dx, want_dw ? sum_of_partials(partial) : torch::Tensor()};
  }
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const int64_t begin = c * kRowsPerChunk, n = std::min(kRowsPerChunk, rows - begin);
      avx2::rms_norm_backward(dyp + begin * width, dsp ? dsp + begin * width : nullptr, xp + begin * width, wp, rp + begin,
                              dxp ? dxp + begin * width : nullptr, pp ? pp + c * width : nullptr, n, width);
    }
  });
  return {dx, want_dw ? sum_of_partials(partial) : torch::Tensor()};
}

struct RmsNormFunction : torch::autograd::Function<RmsNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight, double eps) {
    const torch::Tensor xc = x.contiguous(), w = weight.contiguous();
    Normed out = rows_forward(xc, torch::Tensor(), w, eps);
    ctx->save_for_backward({xc, w, out.rstd});
    return out.y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    auto [dx, dw] = rows_backward(grad[0].to(torch::kFloat).contiguous(), torch::Tensor(), saved[0], saved[1], saved[2],
                                  ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    return {dx, dw, torch::Tensor()};  // dx: the input's shape (empty_like)
  }
};

// Returns {X + RESIDUAL, rms_norm(X + RESIDUAL)}; keeps the sum (an output, which the residual
// stream keeps anyway), the weight and rstd.
struct AddRmsNormFunction : torch::autograd::Function<AddRmsNormFunction> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& residual,
                               const torch::Tensor& weight, double eps) {
    const torch::Tensor r = residual_for_kernel(x, residual);
    Normed out = rows_forward(x.contiguous(), r, weight.contiguous(), eps);
    ctx->save_for_backward({out.sum, weight.contiguous(), out.rstd});
    ctx->set_materialize_grads(false);  // an unused output's gradient stays undefined: no zeros to read or add
    return {out.sum, out.y};
  }

  // The sum's gradient is DSUM (its other uses) plus the norm's; each addend gets it, the residual
  // in its own dtype (as autograd's add would give it).
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &dsum = grad[0], &dy = grad[1];
    const bool want_dx = ctx->needs_input_grad(0) || ctx->needs_input_grad(1);
    torch::Tensor dx = dsum, dw;  // with the norm unused, the sum's own gradient alone
    if (dy.defined())
      std::tie(dx, dw) = rows_backward(dy.to(torch::kFloat).contiguous(), dsum.defined() ? dsum.to(torch::kFloat).contiguous() : dsum,
                                       saved[0], saved[1], saved[2], want_dx, ctx->needs_input_grad(2));
    return {ctx->needs_input_grad(0) ? dx : torch::Tensor(), residual_grad(ctx, dx), dw, torch::Tensor()};
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

std::pair<torch::Tensor, torch::Tensor> add_rms_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                     const torch::Tensor& weight, double eps) {
  const c10::ScalarType rt = residual.scalar_type();
  if (weight.dim() != 1 || x.dim() < 1 || x.size(-1) != weight.size(0) || x.scalar_type() != torch::kFloat ||
      weight.scalar_type() != torch::kFloat || residual.sizes() != x.sizes() ||
      (rt != torch::kFloat && rt != torch::kBFloat16 && rt != torch::kHalf) || x.device() != weight.device() ||
      residual.device() != x.device())
    fail("add_rms_norm: expected fp32 x (..., C), a residual of x's shape in fp32, bf16 or fp16, and an fp32 weight (C), on one "
         "device; found x ", x.sizes(), " ", x.scalar_type(), " on ", x.device(), ", residual ", residual.sizes(), " ", rt, " on ",
         residual.device(), ", weight ", weight.sizes(), " ", weight.scalar_type(), " on ", weight.device());
  if (!add_norm_fused_on(x)) {
    torch::Tensor sum = x + residual;
    return {sum, rms_norm(sum, weight, eps)};
  }
  const variable_list out = AddRmsNormFunction::apply(x, residual, weight, eps);
  return {out[0], out[1]};
}

}  // namespace lofi::kernels
