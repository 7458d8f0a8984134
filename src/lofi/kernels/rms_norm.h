// RMSNorm of fp32 inputs over the last dimension: weight * x / sqrt(mean(x^2) + eps), as
// transformers' LlamaRMSNorm and LibTorch's rms_norm compute it. On a CPU with AVX2 it is one pass
// over each row each way (kernels/cpu_avx2.h), keeping x and one number per row for the backward
// pass: LibTorch's CPU rms_norm is a composite of 6 ops whose autograd replays 11 more, 3.4 ms a
// call forward and backward at (1024, 512) on 2 threads, 17 calls in a step of bench/train.sh's
// Llama row. Elsewhere (on a GPU, where LibTorch's rms_norm is one fused kernel each way, or a
// CPU without AVX2) it is LibTorch's rms_norm.
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// X (..., C) and WEIGHT (C), both fp32 on one device. Differentiable in both.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// {X + RESIDUAL, rms_norm(X + RESIDUAL, WEIGHT, EPS)}: a decoder block's residual add and the norm
// that reads its result (Llama's post-attention norm), in one pass each way on a CPU with AVX2 and
// on a GPU (lofi's CUDA kernel; LibTorch's fused rms_norm takes no residual), where the composite
// writes the sum and reads it back forward, and backward adds the sum's two gradients in a pass of
// its own. X (..., C) and WEIGHT (C) fp32, RESIDUAL of X's shape in fp32, bf16 or fp16 (a block's
// output under autocast); the sum is fp32, the residual's gradient in its dtype. Differentiable in
// all three. Elsewhere, the composite.
std::pair<torch::Tensor, torch::Tensor> add_rms_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                     const torch::Tensor& weight, double eps);

// X (..., C) in bf16 or fp16 (a bf16 base's stream, train.param_dtype = "bf16"), WEIGHT (C) of any
// floating dtype, on any device: transformers' LlamaRMSNorm order, weight * (x32 * rstd).to(x's
// dtype), in ATen's ops, the output in the two dtypes' promotion. For the backward pass it keeps X
// and rstd, one fp32 number per row, where autograd over those ops keeps the fp32 copy of X
// (4 bytes an element a norm: at Llama-3-8B's width, 65 norms, 16,384 tokens a step, 17 GB).
// Its gradients are autograd's, from the same ops.
torch::Tensor rms_norm_low_precision(const torch::Tensor& x, const torch::Tensor& weight, double eps);

}  // namespace lofi::kernels
