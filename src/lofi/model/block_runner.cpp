#include "lofi/model/block_runner.h"

#include "lofi/model/checkpointing.h"

namespace lofi::model {

// A checkpointed block's recomputation in backward calls BLOCK alone, not the hooks: the gradient
// hook that after() may set has made the parameters whole by then.
torch::Tensor BlockRunner::operator()(int64_t index, std::function<torch::Tensor(const torch::Tensor&)> block,
                                      const torch::Tensor& x) const {
  const bool hooked = hooks != nullptr && hooks->before;
  if (hooked) hooks->before(index);
  torch::Tensor y = checkpoints_block(checkpoint_every, index) ? checkpointed(std::move(block), x) : block(x);
  return hooked ? hooks->after(index, y) : y;
}

}  // namespace lofi::model
