// Next-token cross-entropy through the output head without holding the (N, V) logits: the tokens
// are taken in chunks, and each chunk's logits live only while its loss and its gradients (with
// respect to the hidden states and the head's weight) are computed, in the forward pass, as
// Liger Kernel's fused linear cross-entropy does. LibTorch has no such op: its cross_entropy
// needs the full logits, and with autocast they exist twice (bf16 from the matmul, fp32 for the
// softmax), 8 GB at Llama 3's vocabulary, sequence 2048 x batch 8. The backward pass only scales
// the stored gradients. Same result as
//   cross_entropy(linear(h, weight), targets, ignore_index = -100)   (mean over kept tokens)
// under fp32 or bf16 autocast (the matmuls run in the autocast dtype, the softmax in fp32).
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// Tokens whose target is this are left out of the loss and of the mean, as PyTorch's default.
constexpr int64_t kIgnoreIndex = -100;

// Mean cross-entropy of TARGETS (N) int64 given hidden states H (N, E) and the head's WEIGHT
// (V, E): a 0-dim fp32 tensor, differentiable in H and WEIGHT. CHUNK tokens per softmax chunk (0:
// its fp32 logits near 256 MB); GROUP tokens per product into the head's weight gradient, a whole
// number of chunks (0: their gradient logits near 512 MB in the matmul's dtype).
// One difference from PyTorch: when every target is ignored the loss is 0 with zero gradients (PyTorch's mean
// over no tokens is NaN, which would stop a run for a batch of prompts alone).
// SOFTCAP > 0 (Gemma 2's final_logit_softcapping): the loss of the logits SOFTCAP * tanh(logit /
// SOFTCAP), the cap taken in fp32 on the rounded logits (transformers takes it in their dtype).
torch::Tensor linear_cross_entropy(const torch::Tensor& h, const torch::Tensor& weight, const torch::Tensor& targets,
                                   int64_t chunk = 0, int64_t group = 0, double softcap = 0);

// The plain composite it replaces (the full logits, soft-capped where SOFTCAP > 0, then
// cross_entropy): the tests' reference.
torch::Tensor linear_cross_entropy_reference(const torch::Tensor& h, const torch::Tensor& weight,
                                             const torch::Tensor& targets, double softcap = 0);

}  // namespace lofi::kernels
