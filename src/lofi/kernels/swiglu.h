// SwiGLU, silu(gate) * up, the MLP of Llama, Qwen2 and Mistral, keeping only gate and up for the
// backward pass. The composite keeps silu(gate) beside them: one (tokens, d_ff) tensor per layer
// more. On a GPU it is one fused pass each way, lofi's CUDA kernel (kernels/cuda/fused.cu),
// computed in fp32 and returned in the inputs' dtype. On a CPU, fp32 on an x86 CPU with AVX2, it is
// one fused pass each way in ATen's Vectorized<float> (kernels/cpu_avx2.h): where ATen's ops read
// and write the (tokens, d_ff) tensors 16 times a step, it does 8. Elsewhere (bf16 on a CPU,
// another processor) it runs ATen's vectorised silu, product and silu_backward, computing
// silu(gate) again in the backward pass: a loop over the kernel's scalar arithmetic spent 83 ms of a
// 1335 ms step in its backward alone (bench/train.sh's Llama row, profiled on 2 threads).
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// GATE and UP: the same shape and dtype. Differentiable in both.
torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up);

// The CUDA kernel's arithmetic (fused_math.h) as a CPU loop, differentiable: what the CPU tests
// hold the GPU's formulas to. CPU tensors only.
torch::Tensor swiglu_kernel_arithmetic(const torch::Tensor& gate, const torch::Tensor& up);

// The plain composite it replaces: the tests' reference.
torch::Tensor swiglu_reference(const torch::Tensor& gate, const torch::Tensor& up);

}  // namespace lofi::kernels
