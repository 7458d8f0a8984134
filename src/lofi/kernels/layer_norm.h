// LayerNorm with the residual add before it: {X + RESIDUAL, layer_norm(X + RESIDUAL, WEIGHT, BIAS,
// EPS)}, a pre-LN block's residual add and the norm that reads its result (OPT's, GPT-2's and the
// ViT's second norm; OPT-350m's post-LN norms), in one pass each way on a CPU with AVX2
// (kernels/cpu_avx2.h) and on a GPU (lofi's CUDA kernel; LibTorch's layer_norm takes no residual),
// where the composite writes the sum and reads it back forward, and backward adds the sum's two
// gradients in a pass of its own. Elsewhere, the composite.
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// X (..., C), WEIGHT and BIAS (C) fp32 on one device; RESIDUAL of X's shape in fp32, bf16 or fp16
// (a block's output under autocast). The sum is fp32, the residual's gradient in its dtype.
// Differentiable in all four.
std::pair<torch::Tensor, torch::Tensor> add_layer_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                       const torch::Tensor& weight, const torch::Tensor& bias, double eps);

}  // namespace lofi::kernels
