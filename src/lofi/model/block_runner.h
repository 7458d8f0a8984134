// How a decoder runs its blocks: activation checkpointing (checkpointing.h) of every K-th block,
// and hooks around each block's forward for a node that keeps only a part of each block's
// parameters between uses (dist.shard = "full", ZeRO-3): they make the block's parameters whole
// before it runs and free them after, as FSDP's pre- and post-forward hooks do. The hooks are plain
// functions so this layer needs nothing of the collectives behind them.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace lofi::model {

struct BlockHooks {
  // Before block INDEX runs forward: its parameters must be whole when this returns.
  std::function<void(int64_t index)> before;
  // After block INDEX gave OUT: what the block's output is to be (OUT, perhaps with a hook on its
  // gradient that makes the parameters whole again before the block's backward).
  std::function<torch::Tensor(int64_t index, const torch::Tensor& out)> after;
};

struct BlockRunner {
  int64_t checkpoint_every = 0;        // checkpoint every K-th block while training; 0: none
  const BlockHooks* hooks = nullptr;   // none: the parameters are always whole

  // BLOCK(X) as block INDEX. BLOCK must capture what it needs by value (a checkpointed block runs
  // again in backward, after the caller's frame is gone).
  torch::Tensor operator()(int64_t index, std::function<torch::Tensor(const torch::Tensor&)> block, const torch::Tensor& x) const;
};

// The block of BLOCKS each of PARAMS belongs to (-1: outside the blocks), for the sharding hooks.
std::vector<int64_t> blocks_of(torch::nn::ModuleList blocks, const std::vector<torch::Tensor>& params);

}  // namespace lofi::model
