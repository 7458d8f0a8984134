// Linear + ReLU as one product: y = relu(x W^T + b) through ATen's _addmm_activation, which on a
// GPU runs cuBLASLt's bias+ReLU epilogue (the ReLU applied as the product is written: no second
// pass over the (tokens, d_ff) output, no pre-activation tensor) and on a CPU addmm then ReLU in
// place (no second tensor). OPT's fc1 is this layer. LibTorch 2.11 gives _addmm_activation no
// derivative, so the backward is written here, from the output as relu's own is (the gradient
// passes where the output is positive). Its GELU variant is not used: its backward needs the
// pre-activation, which the epilogue does not keep, and it is exact GELU on a CPU but the tanh
// approximation on a GPU.
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// X (..., in); WEIGHT (out, in), or (in, out) where IN_OUT (GPT-2's Conv1D layout); BIAS (out).
// Under autocast the three are cast as autocast casts linear's. Differentiable in all three.
torch::Tensor linear_relu(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, bool in_out = false);

// The plain composite it replaces: the tests' reference.
torch::Tensor linear_relu_reference(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                    bool in_out = false);

}  // namespace lofi::kernels
