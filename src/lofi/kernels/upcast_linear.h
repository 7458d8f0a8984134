// x W^T of a low-precision X and an fp32 W (a LoRA adapter's A over a bf16 base's stream, as PEFT
// casts the layer's input to the adapter's dtype), computed as torch::linear(X.to(fp32), W) but
// keeping X in its own dtype for the backward pass: the cast is exact, so the gradients are the
// same, and the layer saves the 2-byte input the base's product already keeps (the same tensor)
// instead of a 4-byte copy per adapter. Measured on 2 cores, bench/lora.sh's Llama (8 x 512,
// rank 16 on every linear layer, 2048 tokens a step, 4 steps), the bf16 base's peak was 1.75 GB
// against the fp32 base's 1.39 GB with the plain cast (each of q, k and v, and gate and up, made
// its own copy), and 1.49 GB with this.
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// X (..., in) bf16 or fp16, WEIGHT (r, in) fp32 -> (..., r) fp32, differentiable in both.
torch::Tensor upcast_linear(const torch::Tensor& x, const torch::Tensor& weight);

}  // namespace lofi::kernels
