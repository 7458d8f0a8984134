// Which windows of the token stream each node trains on. A window's start is a pure function
// of (seed, node, step, index), so any worker can compute any batch: resuming needs no sampler
// state, and a node's batch is the same however many workers split it.
#pragma once
#include "lofi/seed.h"  // mix_seed and the named streams
#include <cstdint>
#include <string>
#include <vector>

namespace lofi::data {

// Token range [begin, end) a node samples from. "shuffle": everything; "shard": node k's
// contiguous 1/N slice, disjoint from the others.
struct TokenRange {
  int64_t begin = 0, end = 0;
};
TokenRange node_token_range(int64_t total_tokens, int64_t nodes, int64_t node, const std::string& split);

class WindowSampler {
 public:
  // Windows of WINDOW tokens (inputs plus the shifted target: seq_len + 1) inside RANGE.
  WindowSampler(TokenRange range, int64_t window, uint64_t seed, int64_t node);
  // Start offsets of the COUNT windows of STEP's node batch.
  std::vector<int64_t> batch_starts(int64_t step, int64_t count) const;

 private:
  TokenRange range_;
  int64_t window_;
  uint64_t seed_;
  int64_t node_;
};

}  // namespace lofi::data
