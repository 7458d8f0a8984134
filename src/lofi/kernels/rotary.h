// Rotary position embedding (RoPE) as one fused pass each way: on a GPU lofi's CUDA kernel
// (kernels/cuda/fused.cu), on a CPU a parallel loop over the same arithmetic (fused_math.h), for
// fp32 on a CPU with AVX2 in ATen's Vectorized<float> (kernels/cpu_avx2.h).
// LibTorch has no rotary op; the composite (rotate_half, two products, a sum) runs five kernels
// forward and more backward, broadcasting (T, D) angles over a transposed (B, H, T, D) view.
// Same result as transformers' apply_rotary_pos_emb followed by a cast to x's dtype:
//   (x * cos + rotate_half(x) * sin).to(x.dtype)      rotate_half(x) = cat(-x[D/2:], x[:D/2])
// computed in fp32 (under bf16 autocast the composite's fp32 result is cast to bf16 by attention
// anyway: the fused kernel rounds once, to the same value).
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// X (B, H, T, D) of any strides, D even; COS and SIN (T, D), constants (no gradient). Returns
// (B, H, T, D) in X's dtype and layout, differentiable in X.
torch::Tensor rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// The CUDA kernel's arithmetic (fused_math.h) as a CPU loop, differentiable: what the CPU tests
// hold the GPU's formulas to. CPU tensors only.
torch::Tensor rotary_kernel_arithmetic(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// The plain composite it replaces: the tests' reference.
torch::Tensor rotary_reference(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace lofi::kernels
