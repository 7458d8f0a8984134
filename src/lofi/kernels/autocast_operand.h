// An operand as autocast casts the operands of its lower-precision ops (matrix products,
// convolutions, attention), for the ops lofi runs itself and for an input that several products
// read. Under autocast every product casts its fp32 input itself and keeps its own copy for the
// backward pass: the output of a norm feeding q, k and v is cast three times and kept three times
// (once more for each LoRA adapter on them), the three gradients cast back and summed in fp32 in
// the backward pass. On one H100 a Llama-3.2-1B-shaped step spent 9% of its time in casts and 6%
// in such sums (these among others: the weights' casts, the residual stream's). Cast once before
// them, the products find their input already in their dtype (autocast casts nothing then) and
// share one copy. The forward pass is the same to the bit; the products' gradients for the shared
// input are summed in its dtype by autograd rather than in fp32, as they are when the stream is
// bf16.
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// T in autocast's dtype where autocast is on for T's device and T is a floating tensor autocast
// casts (not float64); a leaf that needs a gradient (a weight) through autocast's cache, so one
// cast serves all its uses in the autocast region. Else T itself (also undefined).
torch::Tensor autocast_operand(const torch::Tensor& t);

}  // namespace lofi::kernels
