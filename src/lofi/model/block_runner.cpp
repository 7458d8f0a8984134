#include "lofi/model/block_runner.h"

#include <unordered_map>

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

std::vector<int64_t> blocks_of(torch::nn::ModuleList blocks, const std::vector<torch::Tensor>& params) {
  std::unordered_map<const void*, int64_t> block;  // a parameter's TensorImpl -> its block
  for (size_t i = 0; i < blocks->size(); ++i)
    for (const auto& p : blocks[i]->parameters()) block[p.unsafeGetTensorImpl()] = static_cast<int64_t>(i);
  std::vector<int64_t> out;
  for (const auto& p : params) {
    const auto it = block.find(p.unsafeGetTensorImpl());
    out.push_back(it == block.end() ? -1 : it->second);
  }
  return out;
}

}  // namespace lofi::model
