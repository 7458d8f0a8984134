#include "lofi/data/sampler.h"

#include "lofi/error.h"

namespace lofi::data {

TokenRange node_token_range(int64_t total, int64_t nodes, int64_t node, const std::string& split) {
  if (split == "shuffle") return {0, total};
  if (split != "shard") fail("dist.data_split must be \"shuffle\" or \"shard\", found \"", split, "\"");
  return {total * node / nodes, total * (node + 1) / nodes};
}

WindowSampler::WindowSampler(TokenRange range, int64_t window, uint64_t seed, int64_t node)
    : range_(range), window_(window), seed_(seed), node_(node) {
  if (range.end - range.begin < window)
    fail("node ", node, " has ", range.end - range.begin, " tokens of data, fewer than one window of ", window,
         " (data.seq_len + 1); use more data or a shorter data.seq_len");
}

std::vector<int64_t> WindowSampler::batch_starts(int64_t step, int64_t count) const {
  const uint64_t span = static_cast<uint64_t>(range_.end - range_.begin - window_ + 1);
  std::vector<int64_t> starts(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    uint64_t h = seed::window(seed_, node_, step, i);
    starts[static_cast<size_t>(i)] = range_.begin + static_cast<int64_t>(h % span);
  }
  return starts;
}

}  // namespace lofi::data
