// Activation checkpointing: a block keeps only its input for the backward pass, not the
// activations inside it; backward runs the block again from that input (under the forward's
// autocast state) and back-propagates through the recomputation, as torch.utils.checkpoint's
// reentrant variant does. LibTorch's C++ API has no checkpoint, so this is a custom autograd
// function. Memory: one block's activations at a time instead of every block's, for one more
// forward pass of each checkpointed block. Dropout must be off: a recomputation would draw other
// masks (train.activation_checkpointing refuses dropout).
#pragma once
#include <torch/torch.h>

#include <functional>

namespace lofi::model {

// BLOCK(X), its activations recomputed in backward. BLOCK must capture what it needs by value: it
// runs again after the caller's frame is gone. Outside grad mode (evaluation) it simply runs.
torch::Tensor checkpointed(std::function<torch::Tensor(const torch::Tensor&)> block, const torch::Tensor& x);

// Whether block INDEX is checkpointed when every EVERY-th block is (0: none; 1: all).
inline bool checkpoints_block(int64_t every, int64_t index) { return every > 0 && index % every == 0; }

}  // namespace lofi::model
