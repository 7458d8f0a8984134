#include "lofi/kernels/swiglu.h"

#include <ATen/Parallel.h>

#include "lofi/error.h"
#include "lofi/kernels/cpu_avx2.h"
#include "lofi/kernels/device_launch.h"
#include "lofi/kernels/fused_math.h"

namespace lofi::kernels {
namespace {

constexpr int64_t kGrain = 16384;  // elements per CPU task

// VECTORISED: on a CPU, fp32 through kernels/cpu_avx2.h's loop, else the kernels' scalar
// arithmetic (fused_math.h) one element at a time.
torch::Tensor swiglu_forward(const torch::Tensor& gate, const torch::Tensor& up, bool vectorised) {
  torch::Tensor out = torch::empty_like(gate, torch::MemoryFormat::Contiguous);
  const int64_t n = gate.numel();
  if (gate.is_cuda()) {
    launch_on(gate, "swiglu", [&](void* stream) {
      return cuda::swiglu_forward(cuda_dtype(gate, "swiglu"), gate.data_ptr(), up.data_ptr(), out.data_ptr(), n, stream);
    });
    return out;
  }
  if (vectorised) {
    const float* g = gate.const_data_ptr<float>();
    const float* u = up.const_data_ptr<float>();
    float* o = out.data_ptr<float>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { avx2::swiglu_forward(g + begin, u + begin, o + begin, end - begin); });
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(torch::kBFloat16, torch::kHalf, gate.scalar_type(), "swiglu", [&] {
    const scalar_t* g = gate.const_data_ptr<scalar_t>();
    const scalar_t* u = up.const_data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        o[i] = static_cast<scalar_t>(math::swiglu(static_cast<float>(g[i]), static_cast<float>(u[i])));
    });
  });
  return out;
}

std::pair<torch::Tensor, torch::Tensor> swiglu_backward(const torch::Tensor& grad, const torch::Tensor& gate,
                                                        const torch::Tensor& up, bool vectorised) {
  torch::Tensor dgate = torch::empty_like(gate, torch::MemoryFormat::Contiguous);
  torch::Tensor dup = torch::empty_like(up, torch::MemoryFormat::Contiguous);
  const int64_t n = gate.numel();
  if (gate.is_cuda()) {
    launch_on(gate, "swiglu backward", [&](void* stream) {
      return cuda::swiglu_backward(cuda_dtype(gate, "swiglu"), grad.data_ptr(), gate.data_ptr(), up.data_ptr(), dgate.data_ptr(),
                                   dup.data_ptr(), n, stream);
    });
    return {dgate, dup};
  }
  if (vectorised) {
    const float* dy = grad.const_data_ptr<float>();
    const float* g = gate.const_data_ptr<float>();
    const float* u = up.const_data_ptr<float>();
    float* dg = dgate.data_ptr<float>();
    float* du = dup.data_ptr<float>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      avx2::swiglu_backward(dy + begin, g + begin, u + begin, dg + begin, du + begin, end - begin);
    });
    return {dgate, dup};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(torch::kBFloat16, torch::kHalf, gate.scalar_type(), "swiglu_backward", [&] {
    const scalar_t* dy = grad.const_data_ptr<scalar_t>();
    const scalar_t* g = gate.const_data_ptr<scalar_t>();
    const scalar_t* u = up.const_data_ptr<scalar_t>();
    scalar_t* dg = dgate.data_ptr<scalar_t>();
    scalar_t* du = dup.data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float a, b;
        math::swiglu_backward(static_cast<float>(dy[i]), static_cast<float>(g[i]), static_cast<float>(u[i]), a, b);
        dg[i] = static_cast<scalar_t>(a);
        du[i] = static_cast<scalar_t>(b);
      }
    });
  });
  return {dgate, dup};
}

// Keeps gate and up only. VECTORISED as swiglu_forward's.
struct SwigluFunction : torch::autograd::Function<SwigluFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& gate, const torch::Tensor& up,
                               bool vectorised) {
    const torch::Tensor g = gate.contiguous(), u = up.contiguous();
    ctx->save_for_backward({g, u});
    ctx->saved_data["vectorised"] = vectorised;
    return swiglu_forward(g, u, vectorised);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    auto [dgate, dup] = swiglu_backward(grad[0].to(saved[0].scalar_type()).contiguous(), saved[0], saved[1],
                                        ctx->saved_data["vectorised"].toBool());
    return {dgate, dup, torch::Tensor()};
  }
};

// The CPU's where the AVX2 loop does not run: ATen's vectorised ops, keeping gate and up only
// (silu(gate) computed again in backward).
struct SwigluAtenFunction : torch::autograd::Function<SwigluAtenFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& gate, const torch::Tensor& up) {
    ctx->save_for_backward({gate, up});
    return torch::silu(gate) * up;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &gate = saved[0], &up = saved[1];
    const torch::Tensor dy = grad[0].to(gate.scalar_type());
    torch::Tensor dgate, dup;
    if (ctx->needs_input_grad(1)) dup = dy * torch::silu(gate);
    if (ctx->needs_input_grad(0)) dgate = at::silu_backward(dy * up, gate);
    return {dgate, dup};
  }
};

void check_inputs(const torch::Tensor& gate, const torch::Tensor& up) {
  if (gate.sizes() != up.sizes() || gate.scalar_type() != up.scalar_type() || gate.device() != up.device())
    fail("swiglu: gate and up must match in shape, dtype and device; found ", gate.sizes(), " ", gate.scalar_type(), " ",
         gate.device(), " and ", up.sizes(), " ", up.scalar_type(), " ", up.device());
}

}  // namespace

torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up) {
  check_inputs(gate, up);
  if (!gate.is_cuda()) {
    if (gate.scalar_type() == torch::kFloat && avx2::avx2_available()) return SwigluFunction::apply(gate, up, true);
    return SwigluAtenFunction::apply(gate, up);
  }
  if (!fused_cuda_built()) return swiglu_reference(gate, up);
  return SwigluFunction::apply(gate, up, false);
}

torch::Tensor swiglu_kernel_arithmetic(const torch::Tensor& gate, const torch::Tensor& up) {
  check_inputs(gate, up);
  if (gate.is_cuda()) fail("swiglu_kernel_arithmetic: CPU tensors only; found ", gate.device());
  return SwigluFunction::apply(gate, up, false);
}

torch::Tensor swiglu_reference(const torch::Tensor& gate, const torch::Tensor& up) { return torch::silu(gate) * up; }

}  // namespace lofi::kernels
