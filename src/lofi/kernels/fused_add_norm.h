// What the fused residual add + norm ops share (add_rms_norm in rms_norm.cpp, add_layer_norm in
// layer_norm.cpp): where they run fused, the residual as their kernels read it, and the
// residual's gradient.
#pragma once
#include <torch/torch.h>

#include "lofi/kernels/cpu_avx2.h"
#include "lofi/kernels/device_launch.h"

namespace lofi::kernels {

// Whether X's device runs the fused op: a CPU with AVX2 (cpu_avx2.h's loop) or a GPU with lofi's
// CUDA kernels; elsewhere the composite runs.
inline bool add_norm_fused_on(const torch::Tensor& x) {
  return x.numel() > 0 && ((x.is_cpu() && avx2::avx2_available()) || (x.is_cuda() && fused_cuda_built()));
}

// The residual as the kernels read it: the CPU loop in fp32, the CUDA kernel in its own dtype.
inline torch::Tensor residual_for_kernel(const torch::Tensor& x, const torch::Tensor& residual) {
  return x.is_cuda() ? residual.contiguous() : residual.to(torch::kFloat).contiguous();
}

// The residual's gradient (input 1) from the sum's, DX; undefined where not wanted. Autograd
// casts it to the residual's dtype (as the gradient of its add would be).
inline torch::Tensor residual_grad(torch::autograd::AutogradContext* ctx, const torch::Tensor& dx) {
  return ctx->needs_input_grad(1) ? dx : torch::Tensor();
}

}  // namespace lofi::kernels
