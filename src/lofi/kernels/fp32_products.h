// A bf16 or fp16 linear layer on a CPU whose PyTorch has no fast matrix product in that dtype:
// x W^T + b with the products computed in fp32 from the same values, rounded once to the inputs'
// dtype, as PyTorch's own bf16 product rounds its fp32 sums. Without AVX-512 (oneDNN's bf16 path
// needs avx512bw, avx512vl and avx512dq), ATen multiplies bf16 matrices in a reference loop:
// measured on a 2-core AVX2 CPU at (2048, 512) x (512, 1408), the forward product took 0.24 s
// against fp32's 0.036 s and the input's gradient (g W, neither transposed) 3.56 s against 0.032 s,
// so a LoRA step over a bf16 base ran at 18 tokens/s where the fp32 base ran 1012. Only the inputs
// are kept for the backward pass (the fp32 copies are made again there), so a frozen bf16 base
// still costs 2 bytes a weight between forward and backward.
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// Whether this CPU has what PyTorch's fast bf16 and fp16 products need (on x86, avx512bw, avx512vl
// and avx512dq, as its oneDNN path asks; other processors: assumed so).
bool cpu_has_fast_low_precision_products();

// Whether a product over WEIGHT should go through linear_with_fp32_products: a bf16 or fp16 CPU
// tensor where this CPU lacks the instructions PyTorch's fast product in that dtype needs.
bool wants_fp32_products(const torch::Tensor& weight);

// X (..., in), WEIGHT (out, in) (any strides), BIAS (out) or undefined, one dtype. Returns
// (..., out) in that dtype, differentiable in all three.
torch::Tensor linear_with_fp32_products(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace lofi::kernels
