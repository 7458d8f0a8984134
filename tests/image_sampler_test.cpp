// ImageSampler: pure function of (seed, node, step), epochs without repeats, disjoint shards.
#include <gtest/gtest.h>

#include <set>

#include "lofi/data/image_loader.h"
#include "lofi/data/image_sampler.h"
#include "lofi/error.h"

namespace lofi::data {
namespace {

TEST(ImageSampler, EachEpochVisitsEveryImageOnce) {
  ImageSampler sampler(10, 4, /*seed=*/3, /*node=*/0, /*nodes=*/1, "shuffle");
  std::vector<int64_t> seen;
  for (int64_t step = 0; step < 5; ++step)
    for (int64_t i : sampler(step)) seen.push_back(i);  // 20 draws: two epochs
  std::multiset<int64_t> first(seen.begin(), seen.begin() + 10), second(seen.begin() + 10, seen.end());
  for (int64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(first.count(i), 1u);
    EXPECT_EQ(second.count(i), 1u);
  }
  EXPECT_FALSE(std::equal(seen.begin(), seen.begin() + 10, seen.begin() + 10));  // a new order
}

TEST(ImageSampler, PureFunctionOfSeedNodeAndStep) {
  ImageSampler a(100, 8, 1, 2, 4, "shuffle"), b(100, 8, 1, 2, 4, "shuffle"), other(100, 8, 1, 3, 4, "shuffle");
  EXPECT_EQ(a(37), b(37));  // b has never seen steps 0..36
  EXPECT_EQ(a(3), b(3));    // going back to an earlier epoch
  EXPECT_NE(a(3), other(3));
  BatchIndices copy = a;  // copies share the cache and answer alike
  EXPECT_EQ(copy(5), b(5));
}

TEST(ImageSampler, ShardsAreDisjointAndCoverEverything) {
  std::set<int64_t> all;
  for (int64_t node = 0; node < 3; ++node) {
    ImageSampler s(30, 10, 7, node, 3, "shard");
    auto batch = s(0);  // one epoch of the shard
    std::set<int64_t> mine(batch.begin(), batch.end());
    EXPECT_EQ(mine.size(), 10u);
    for (int64_t i : mine) EXPECT_TRUE(all.insert(i).second) << "image " << i << " in two shards";
  }
  EXPECT_EQ(all.size(), 30u);
  EXPECT_THROW(ImageSampler(30, 10, 7, 0, 3, "stripes"), Error);
  EXPECT_THROW(ImageSampler(30, 10, 7, 3, 3, "shard"), Error);
}

}  // namespace
}  // namespace lofi::data
