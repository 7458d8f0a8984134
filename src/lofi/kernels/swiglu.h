// SwiGLU, silu(gate) * up, the MLP of Llama, Qwen2 and Mistral, as one fused pass each way: on a
// GPU lofi's CUDA kernel (kernels/cuda/fused.cu), on a CPU a parallel loop over the same arithmetic
// (fused_math.h), computed in fp32 and returned in the inputs' dtype. The composite runs silu,
// then the product, and keeps silu(gate) for the backward pass beside gate and up: one (tokens,
// d_ff) tensor per layer more than this, which keeps only gate and up.
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// GATE and UP: the same shape and dtype. Differentiable in both.
torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up);

// The plain composite it replaces: the tests' reference.
torch::Tensor swiglu_reference(const torch::Tensor& gate, const torch::Tensor& up);

}  // namespace lofi::kernels
