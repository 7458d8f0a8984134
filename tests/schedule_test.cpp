#include "lofi/train/schedule.h"

#include <gtest/gtest.h>

using lofi::train::lr_at;
using lofi::train::Schedule;

TEST(Schedule, WarmupIsLinearFromZero) {
  Schedule s{1e-3, 1e-4, 10, 100};
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 1e-4);
  EXPECT_DOUBLE_EQ(lr_at(s, 4), 5e-4);
  EXPECT_DOUBLE_EQ(lr_at(s, 9), 1e-3);
}

TEST(Schedule, CosineFromPeakToFloor) {
  Schedule s{1e-3, 1e-4, 10, 101};
  EXPECT_DOUBLE_EQ(lr_at(s, 10), 1e-3);
  EXPECT_NEAR(lr_at(s, 55), 0.5 * (1e-3 + 1e-4), 1e-15);  // halfway through the decay
  EXPECT_DOUBLE_EQ(lr_at(s, 100), 1e-4);
  for (int64_t step = 11; step <= 100; ++step) EXPECT_LE(lr_at(s, step), lr_at(s, step - 1));
}

TEST(Schedule, NoWarmup) {
  Schedule s{2e-3, 0, 0, 50};
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 2e-3);
  EXPECT_DOUBLE_EQ(lr_at(s, 49), 0.0);
}
