// The input of several matrix products, cast once to autocast's dtype. Under autocast every
// product casts its fp32 input itself, and keeps its own copy for the backward pass: the output of
// a norm feeding q, k and v is cast three times and kept three times (and twice more for each LoRA
// adapter on them), the k gradients cast back and summed in fp32 in the backward pass. On one H100
// a Llama-3.2-1B-shaped step spent 9% of its time in casts and 6% in such sums (these among
// others: the weights' casts, the residual stream's). Cast here once, the
// products find their input already in their dtype (autocast casts nothing then) and share one
// copy. The forward pass is the same to the bit; the products' gradients for the shared input are
// summed in its dtype by autograd rather than in fp32, as they are when the stream is bf16.
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// X as a product under autocast would take it: in autocast's dtype where autocast is on for X's
// device and X is fp32; else X itself.
torch::Tensor autocast_input(const torch::Tensor& x);

}  // namespace lofi::kernels
