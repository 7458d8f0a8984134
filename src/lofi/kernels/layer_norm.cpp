#include "lofi/kernels/layer_norm.h"

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

// Returns {X + RESIDUAL, layer_norm(X + RESIDUAL)}; keeps the sum (an output, which the residual
// stream keeps anyway), the weight, and each row's mean and rstd.
struct AddLayerNormFunction : torch::autograd::Function<AddLayerNormFunction> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x_in, const torch::Tensor& residual,
                               const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
    const torch::Tensor x = x_in.contiguous(), w = weight.contiguous(), b = bias.contiguous();
    const torch::Tensor r = residual_for_kernel(x, residual);
    const int64_t width = w.size(0), rows = x.numel() / width;
    torch::Tensor sum = torch::empty_like(x), y = torch::empty_like(x);
    torch::Tensor mean = torch::empty({rows}, x.options()), rstd = torch::empty({rows}, x.options());  // (rows) each
    const float* xp = x.const_data_ptr<float>();
    const float* wp = w.const_data_ptr<float>();
    const float* bp = b.const_data_ptr<float>();
    float* hp = sum.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    float* mp = mean.data_ptr<float>();
    float* sp = rstd.data_ptr<float>();
    if (x.is_cuda()) {
      launch_on(x, "add_layer_norm", [&](void* stream) {
        return cuda::add_layer_norm_forward(cuda_dtype(r, "add_layer_norm"), xp, r.const_data_ptr(), wp, bp, hp, yp, mp, sp, rows,
                                            width, static_cast<float>(eps), stream);
      });
    } else {
      const float* rp = r.const_data_ptr<float>();
      at::parallel_for(0, rows, kRowsPerChunk, [&](int64_t begin, int64_t end) {
        avx2::add_layer_norm_forward(xp + begin * width, rp + begin * width, wp, bp, hp + begin * width, yp + begin * width,
                                     mp + begin, sp + begin, end - begin, width, static_cast<float>(eps));
      });
    }
    ctx->save_for_backward({sum, w, mean, rstd});
    ctx->set_materialize_grads(false);  // an unused output's gradient stays undefined: no zeros to read or add
    return {sum, y};
  }

  // The sum's gradient is DSUM (its other uses) plus the norm's; each addend gets it, the residual
  // in its own dtype (as autograd's add would give it).
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &h = saved[0], &w = saved[1], &mean = saved[2], &rstd = saved[3];
    const torch::Tensor &dsum_in = grad[0], &dy_in = grad[1];
    const bool want_dx = ctx->needs_input_grad(0) || ctx->needs_input_grad(1);
    const bool want_dw = ctx->needs_input_grad(2) && dy_in.defined(), want_db = ctx->needs_input_grad(3) && dy_in.defined();
    torch::Tensor dx = dsum_in, dw, db;  // with the norm unused, the sum's own gradient alone
    if (dy_in.defined() && (want_dx || want_dw || want_db)) {
      const torch::Tensor dy = dy_in.to(torch::kFloat).contiguous();
      const torch::Tensor dsum = dsum_in.defined() ? dsum_in.to(torch::kFloat).contiguous() : dsum_in;
      const int64_t width = w.size(0), rows = h.numel() / width, chunks = row_chunks(h, rows);
      dx = want_dx ? torch::empty_like(h) : torch::Tensor();
      // (chunks, C) each: partial sums of the weight's and the bias's gradients
      torch::Tensor wpart = want_dw ? torch::zeros({chunks, width}, h.options()) : torch::Tensor();
      torch::Tensor bpart = want_db ? torch::zeros({chunks, width}, h.options()) : torch::Tensor();
      const float* dyp = dy.const_data_ptr<float>();
      const float* dsp = dsum.defined() ? dsum.const_data_ptr<float>() : nullptr;
      const float* hp = h.const_data_ptr<float>();
      const float* wp = w.const_data_ptr<float>();
      const float* mp = mean.const_data_ptr<float>();
      const float* sp = rstd.const_data_ptr<float>();
      float* dxp = want_dx ? dx.data_ptr<float>() : nullptr;
      float* wpp = want_dw ? wpart.data_ptr<float>() : nullptr;
      float* bpp = want_db ? bpart.data_ptr<float>() : nullptr;
      if (h.is_cuda()) {
        launch_on(h, "layer_norm backward", [&](void* stream) {
          return cuda::layer_norm_backward(dyp, dsp, hp, wp, mp, sp, dxp, wpp, bpp, static_cast<int>(chunks), rows, width, stream);
        });
      } else {
        at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
          for (int64_t c = first; c < last; ++c) {
            const int64_t begin = c * kRowsPerChunk, n = std::min(kRowsPerChunk, rows - begin), at = begin * width;
            avx2::layer_norm_backward(dyp + at, dsp ? dsp + at : nullptr, hp + at, wp, mp + begin, sp + begin,
                                      dxp ? dxp + at : nullptr, wpp ? wpp + c * width : nullptr, bpp ? bpp + c * width : nullptr, n,
                                      width);
          }
        });
      }
      if (want_dw) dw = sum_of_partials(wpart);
      if (want_db) db = sum_of_partials(bpart);
    }
    return {ctx->needs_input_grad(0) ? dx : torch::Tensor(), residual_grad(ctx, dx), dw, db, torch::Tensor()};
  }
};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> add_layer_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                       const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
  const c10::ScalarType rt = residual.scalar_type();
  const bool affine = weight.defined() && bias.defined() && weight.dim() == 1 && bias.sizes() == weight.sizes() &&
                      weight.scalar_type() == torch::kFloat && bias.scalar_type() == torch::kFloat &&
                      weight.device() == x.device() && bias.device() == x.device();
  if (!affine || x.dim() < 1 || x.size(-1) != weight.size(0) || x.scalar_type() != torch::kFloat || residual.sizes() != x.sizes() ||
      (rt != torch::kFloat && rt != torch::kBFloat16 && rt != torch::kHalf) || residual.device() != x.device())
    fail("add_layer_norm: expected fp32 x (..., C), a residual of x's shape in fp32, bf16 or fp16, and an fp32 weight and bias "
         "(C), on one device; found x ", x.sizes(), " ", x.scalar_type(), " on ", x.device(), ", residual ", residual.sizes(), " ",
         rt, ", weight ", weight.defined() ? weight.sizes() : torch::IntArrayRef{}, ", bias ",
         bias.defined() ? bias.sizes() : torch::IntArrayRef{});
  if (!add_norm_fused_on(x)) {
    torch::Tensor sum = x + residual;
    return {sum, torch::layer_norm(sum, {weight.size(0)}, weight, bias, eps)};
  }
  const variable_list out = AddLayerNormFunction::apply(x, residual, weight, bias, eps);
  return {out[0], out[1]};
}

}  // namespace lofi::kernels
