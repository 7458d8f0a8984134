#include "lofi/dist/shard_layout.h"

#include <algorithm>

#include "lofi/error.h"

namespace lofi::dist {

ShardMode shard_mode(const std::string& name) {
  if (name == "none") return ShardMode::none;
  if (name == "optimizer") return ShardMode::optimizer;
  if (name == "gradients") return ShardMode::gradients;
  if (name == "full") return ShardMode::full;
  fail("dist.shard: expected \"none\", \"optimizer\", \"gradients\" or \"full\", found \"", name, "\"");
}

const char* shard_mode_name(ShardMode mode) {
  switch (mode) {
    case ShardMode::none: return "none";
    case ShardMode::optimizer: return "optimizer";
    case ShardMode::gradients: return "gradients";
    case ShardMode::full: return "full";
  }
  return "?";
}

ShardLayout plan_shards(const std::vector<int64_t>& numels, int64_t cap, int64_t workers, int64_t rank,
                        const std::vector<int64_t>& units) {
  if (workers < 1 || rank < 0 || rank >= workers) fail("internal: shard rank ", rank, " of ", workers, " workers");
  if (!units.empty() && units.size() != numels.size()) fail("internal: ", units.size(), " block indices for ", numels.size(), " parameters");
  ShardLayout layout;
  layout.workers = workers, layout.rank = rank;
  layout.slot.resize(numels.size());
  for (size_t k = numels.size(); k-- > 0;) {  // reverse order: the last layers' gradients come first
    const int64_t unit = units.empty() ? -1 : units[k];
    const bool fresh = layout.buckets.empty() || layout.buckets.back().unit != unit ||
                       (unit < 0 && layout.buckets.back().numel > 0 && layout.buckets.back().numel + numels[k] > cap);
    if (fresh) layout.buckets.emplace_back().unit = unit;
    BucketLayout& b = layout.buckets.back();
    layout.slot[k] = {layout.buckets.size() - 1, b.numel};
    b.params.push_back(k);
    b.offsets.push_back(b.numel);
    b.numel += numels[k];
  }
  for (BucketLayout& b : layout.buckets) b.padded = (b.numel + workers - 1) / workers * workers;
  return layout;
}

int64_t ShardLayout::owned_numel() const {
  int64_t n = 0;
  for (size_t b = 0; b < buckets.size(); ++b) n += part_numel(b);
  return n;
}

std::vector<Piece> ShardLayout::pieces() const {
  std::vector<Piece> out;
  for (size_t b = 0; b < buckets.size(); ++b) {
    const BucketLayout& bucket = buckets[b];
    const int64_t part = part_numel(b), lo = rank * part, hi = lo + part;  // this worker's [lo, hi) of the bucket
    for (size_t i = 0; i < bucket.params.size(); ++i) {
      const int64_t start = bucket.offsets[i];
      const int64_t stop = i + 1 < bucket.params.size() ? bucket.offsets[i + 1] : bucket.numel;
      const int64_t from = std::max(start, lo), to = std::min(stop, hi);
      if (from >= to) continue;
      out.push_back({bucket.params[i], from - start, to - start, b, from - lo});
    }
  }
  return out;
}

}  // namespace lofi::dist
