// Seeded random start values drawn over every core, the same whatever the thread count. PyTorch's
// CPU samplers draw a tensor's numbers one at a time from one Mersenne Twister: an 8B model's
// normal init takes minutes on one core while the others wait. Here a tensor's elements are taken
// in fixed blocks of 2^20, each block drawn by PyTorch's own sampler from a generator of its own,
// seeded from SEED and the block's index, and the blocks are spread over the intra-op threads
// (at::parallel_for). The numbers depend on SEED and the tensor's size alone.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace lofi::model {

// Elements per block: each block's draws come from its own generator.
constexpr int64_t kSeededInitBlock = int64_t{1} << 20;

// Fills T (a contiguous host tensor of a floating dtype) with normal(MEAN, STD) draws.
void seeded_normal_(const torch::Tensor& t, double mean, double std, uint64_t seed);

}  // namespace lofi::model
