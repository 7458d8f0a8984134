// A language model's memory footprint for the memory plan (train/memory_plan.h): its parameters
// counted on the modules lofi builds, and the bytes a micro-batch keeps for backward, from the
// tensors lofi's blocks save.
#pragma once
#include <cstdint>

#include "lofi/train/memory_plan.h"

namespace lofi::family {

// CONFIG's language model with MICRO_BATCH sequences of data.seq_len per micro-batch.
//
// Parameters: the model is built with one block and a small vocabulary (for an 8B shape, about
// 1 GB for a second), LoRA attached as the run would; each tensor of the block counts n_layer
// times, and each tensor with a vocabulary-sized dimension counts as the real vocabulary's.
//
// Saved activations per block (N = micro-batch x sequence tokens, e = 2 bytes under bf16 autocast,
// else 4; the residual stream stays fp32): each norm's fp32 input and its output as the next
// matmul saves it (4N d + e N d, twice); query, key, value, the attention output and its
// log-sum-exp as the fused attention saves them; OPT's and GPT-2's contiguous copy of that output;
// the MLP's saved inputs (gated: gate, up and the product; ReLU: its output; GELU or SiLU: its
// input and output); a byte per element for each dropout mask. A checkpointed block keeps only
// its fp32 input. The loss head (kernels/cross_entropy.h) keeps the gradients of the hidden
// states and of the head's weight in fp32, and at most 256 MB of fp32 logits and 512 MB of
// gradient logits at once.
train::ModelFootprint lm_footprint(const train::Config& config, int64_t micro_batch);

}  // namespace lofi::family
