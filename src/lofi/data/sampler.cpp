#include "lofi/data/sampler.h"

#include "lofi/error.h"

namespace lofi::data {

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  auto splitmix = [](uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  };
  return splitmix(splitmix(splitmix(splitmix(a) ^ b) ^ c) ^ d);
}

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
    uint64_t h = mix_seed(seed_, static_cast<uint64_t>(node_) + 1, static_cast<uint64_t>(step), static_cast<uint64_t>(i));
    starts[static_cast<size_t>(i)] = range_.begin + static_cast<int64_t>(h % span);
  }
  return starts;
}

}  // namespace lofi::data
