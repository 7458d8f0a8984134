// Which images each node trains on at each step: epochs of a shuffled order, without
// replacement inside an epoch. A step's indices are a pure function of (seed, node, step), as
// the token sampler's are, so a resumed run and any thread count see the same batches.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lofi::data {

class ImageSampler {
 public:
  // SIZE images, BATCH per node step. split "shuffle": every node walks all images in its own
  // order; "shard": node NODE of NODES owns a disjoint 1/NODES of them (a seed-fixed random
  // slice, so that no node gets only a few classes of a class-sorted folder).
  ImageSampler(int64_t size, int64_t batch, uint64_t seed, int64_t node, int64_t nodes, const std::string& split);

  // Indices of STEP's batch. Copies share one cache, so a copy passes as a BatchIndices.
  std::vector<int64_t> operator()(int64_t step) const;

  int64_t steps_per_epoch() const { return (static_cast<int64_t>(pool_.size()) + batch_ - 1) / batch_; }

 private:
  struct Cache {  // the last epoch's order
    std::mutex mutex;
    int64_t epoch = -1;
    std::vector<int64_t> order;
  };
  const std::vector<int64_t>& epoch_order(int64_t epoch) const;  // caller holds cache_->mutex

  std::vector<int64_t> pool_;  // the images this node may draw
  int64_t batch_;
  uint64_t seed_;
  int64_t node_;
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace lofi::data
