// Epoch orders come from torch::randperm on a generator seeded by (seed, node, epoch); the last
// epoch's order is cached, since consecutive steps nearly always share it.
#include "lofi/data/image_sampler.h"

#include <torch/torch.h>

#include "lofi/data/sampler.h"
#include "lofi/error.h"

namespace lofi::data {
namespace {

std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto perm = torch::randperm(n, gen, torch::kLong);
  return {perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + n};
}

}  // namespace

ImageSampler::ImageSampler(int64_t size, int64_t batch, uint64_t seed, int64_t node, int64_t nodes,
                           const std::string& split)
    : batch_(batch), seed_(seed), node_(node) {
  if (size < 1) fail("image sampler: expected at least one image, found ", size);
  if (batch < 1) fail("image sampler: expected a batch of at least 1, found ", batch);
  if (nodes < 1 || node < 0 || node >= nodes) fail("image sampler: expected node in [0, ", nodes, "), found ", node);
  if (split == "shuffle") {
    pool_.resize(static_cast<size_t>(size));
    for (int64_t i = 0; i < size; ++i) pool_[static_cast<size_t>(i)] = i;
  } else if (split == "shard") {
    if (size < nodes) fail("image sampler: ", size, " images cannot be sharded over ", nodes, " nodes");
    auto all = permutation(size, seed::shared_order(seed));  // one order shared by every node
    int64_t begin = size * node / nodes, end = size * (node + 1) / nodes;
    pool_.assign(all.begin() + begin, all.begin() + end);
  } else {
    fail("dist.data_split must be \"shuffle\" or \"shard\", found \"", split, "\"");
  }
}

const std::vector<int64_t>& ImageSampler::epoch_order(int64_t epoch) const {
  Cache& c = *cache_;
  if (epoch != c.epoch) {
    auto n = static_cast<int64_t>(pool_.size());
    auto perm = permutation(n, seed::data_order(seed_, node_, epoch));
    c.order.resize(pool_.size());
    for (size_t i = 0; i < pool_.size(); ++i) c.order[i] = pool_[static_cast<size_t>(perm[i])];
    c.epoch = epoch;
  }
  return c.order;
}

std::vector<int64_t> ImageSampler::operator()(int64_t step) const {
  if (step < 0) fail("image sampler: expected a step >= 0, found ", step);
  // Steps walk a node's epoch order in batches; a batch crossing the epoch's end continues in
  // the next epoch's order, so every batch is full and no image repeats within an epoch.
  std::lock_guard<std::mutex> lock(cache_->mutex);
  auto n = static_cast<int64_t>(pool_.size());
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(batch_));
  for (int64_t k = step * batch_; k < (step + 1) * batch_; ++k)
    out.push_back(epoch_order(k / n)[static_cast<size_t>(k % n)]);
  return out;
}

}  // namespace lofi::data
