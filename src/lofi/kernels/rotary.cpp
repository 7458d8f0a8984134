#include "lofi/kernels/rotary.h"

#include <ATen/Parallel.h>

#include "lofi/error.h"
#include "lofi/kernels/cpu_avx2.h"
#include "lofi/kernels/device_launch.h"
#include "lofi/kernels/fused_math.h"

namespace lofi::kernels {
namespace {

// Runs ROW(x offset, y offset, t) for every (b, h, t) row of S in parallel, GRAIN rows a task.
template <typename Row>
void for_each_row(const cuda::RotaryShape& s, int64_t grain, const Row& row) {
  at::parallel_for(0, s.B * s.H * s.T, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t t = r % s.T, h = r / s.T % s.H, b = r / s.T / s.H;  // r = (b * H + h) * T + t
      row(b * s.x_stride[0] + h * s.x_stride[1] + t * s.x_stride[2], b * s.y_stride[0] + h * s.y_stride[1] + t * s.y_stride[2], t);
    }
  });
}

// Y = rotary(X) (or its gradient map), Y allocated in X's layout. COS, SIN: (T, D) fp32 contiguous.
// VECTORISED: on a CPU, fp32 through kernels/cpu_avx2.h's loop, else fused_math.h's arithmetic one
// pair at a time.
torch::Tensor rotary_pass(torch::Tensor x, const torch::Tensor& cos, const torch::Tensor& sin, bool backward, bool vectorised) {
  if (x.stride(-1) != 1) x = x.contiguous();
  torch::Tensor y = torch::empty_like(x, torch::MemoryFormat::Preserve);
  if (y.stride(-1) != 1) y = torch::empty(x.sizes(), x.options());
  cuda::RotaryShape s{x.size(0), x.size(1), x.size(2), x.size(3), {x.stride(0), x.stride(1), x.stride(2)},
                      {y.stride(0), y.stride(1), y.stride(2)}};
  if (x.is_cuda()) {
    launch_on(x, "rotary", [&](void* stream) {
      return cuda::rotary(cuda_dtype(x, "rotary"), x.data_ptr(), y.data_ptr(), s, cos.data_ptr<float>(), sin.data_ptr<float>(),
                          backward, stream);
    });
    return y;
  }
  const int64_t half = s.D / 2;
  const float* c = cos.data_ptr<float>();
  const float* sn = sin.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(half, 1));
  if (vectorised) {
    const float* xp = x.const_data_ptr<float>();
    float* yp = y.data_ptr<float>();
    for_each_row(s, grain, [&](int64_t xo, int64_t yo, int64_t t) {
      avx2::rotary_row(xp + xo, yp + yo, c + t * s.D, sn + t * s.D, half, backward);
    });
    return y;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(torch::kBFloat16, torch::kHalf, x.scalar_type(), "rotary", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    for_each_row(s, grain, [&](int64_t xo, int64_t yo, int64_t t) {
      const scalar_t* xr = xp + xo;
      scalar_t* yr = yp + yo;
      const float* cr = c + t * s.D;
      const float* sr = sn + t * s.D;
      for (int64_t d = 0; d < half; ++d) {
        float y1, y2;
        math::rotary_pair(static_cast<float>(xr[d]), static_cast<float>(xr[d + half]), cr[d], sr[d], cr[d + half],
                          sr[d + half], backward, y1, y2);
        yr[d] = static_cast<scalar_t>(y1);
        yr[d + half] = static_cast<scalar_t>(y2);
      }
    });
  });
  return y;
}

struct RotaryFunction : torch::autograd::Function<RotaryFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin, bool vectorised) {
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["vectorised"] = vectorised;
    return rotary_pass(x, cos, sin, /*backward=*/false, vectorised);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const bool vectorised = ctx->saved_data["vectorised"].toBool();
    return {rotary_pass(grad[0], saved[0], saved[1], /*backward=*/true, vectorised), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

void check_shapes(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  if (x.dim() != 4 || x.size(3) % 2 != 0 || cos.sizes() != sin.sizes() || cos.dim() != 2 || cos.size(0) != x.size(2) ||
      cos.size(1) != x.size(3))
    fail("rotary: expected x (B, H, T, D) with D even and cos, sin (T, D); found x ", x.sizes(), ", cos ", cos.sizes(),
         ", sin ", sin.sizes());
  if (cos.requires_grad() || sin.requires_grad()) fail("rotary: the angles' cos and sin are constants; found them requiring a gradient");
}

torch::Tensor angles_for(const torch::Tensor& x, const torch::Tensor& t) { return t.to(x.device(), torch::kFloat).contiguous(); }

}  // namespace

torch::Tensor rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  check_shapes(x, cos, sin);
  if (x.is_cuda() && !fused_cuda_built()) return rotary_reference(x, cos, sin);
  const bool vectorised = !x.is_cuda() && x.scalar_type() == torch::kFloat && avx2::avx2_available();
  return RotaryFunction::apply(x, angles_for(x, cos), angles_for(x, sin), vectorised);
}

torch::Tensor rotary_kernel_arithmetic(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  check_shapes(x, cos, sin);
  if (x.is_cuda()) fail("rotary_kernel_arithmetic: CPU tensors only; found ", x.device());
  return RotaryFunction::apply(x, angles_for(x, cos), angles_for(x, sin), false);
}

torch::Tensor rotary_reference(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);  // rotate_half: (B, H, T, D)
  return (x * cos + rotated * sin).to(x.scalar_type());                                    // (T, D) broadcast
}

}  // namespace lofi::kernels
