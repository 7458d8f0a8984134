// The device-side record of the training steps (train/step_health.h): which steps are skipped,
// which one is named where a run diverged, and what a read reports and resets.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "lofi/train/step_health.h"

namespace lofi {
namespace {

TEST(StepHealth, SkipsWithinTheAllowanceAndNamesTheFirstStepPastIt) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  train::StepHealth health(torch::kCPU, /*allowed_skips=*/1);
  auto record = [&](int64_t step, double loss, double norm) {
    return health.record(step, torch::full({1}, loss), torch::full({}, norm)).item<float>();
  };
  EXPECT_EQ(record(0, 2.5, 1.0), 0.0f);
  EXPECT_EQ(record(1, nan, 1.0), 1.0f);  // skipped: the one allowed
  EXPECT_EQ(record(2, 2.25, 0.5), 0.0f);
  train::StepHealth::Reading r = health.read();
  EXPECT_EQ(r.loss, 2.25);
  EXPECT_EQ(r.grad_norm, 0.5);
  EXPECT_EQ(r.skipped, 1);
  EXPECT_EQ(r.new_skips, 1);
  EXPECT_EQ(r.first_new_skip, 2);  // steps are named 1-based, as the log does
  EXPECT_EQ(r.diverged_at, 0);
  EXPECT_EQ(record(3, 2.0, inf), 1.0f);  // past the allowance: diverged here
  EXPECT_EQ(record(4, nan, nan), 1.0f);  // still no update
  EXPECT_EQ(record(5, 1.5, 0.25), 0.0f);
  r = health.read();
  EXPECT_EQ(r.new_skips, 0);  // counted anew since the last read; steps past the allowance are not skips
  EXPECT_EQ(r.first_new_skip, 0);
  EXPECT_EQ(r.skipped, 1);
  EXPECT_EQ(r.diverged_at, 4);  // the first step past the allowance, not the last bad one
  EXPECT_EQ(r.diverged_loss, 2.0);
  EXPECT_TRUE(std::isinf(r.diverged_norm));
  EXPECT_EQ(r.loss, 1.5);
}

TEST(StepHealth, NoAllowanceDivergesAtTheFirstBadStep) {
  train::StepHealth health(torch::kCPU, 0);
  health.record(0, torch::full({1}, 1.0), torch::full({}, 1.0));
  health.record(1, torch::full({1}, std::numeric_limits<double>::infinity()), torch::full({}, 1.0));
  const train::StepHealth::Reading r = health.read();
  EXPECT_EQ(r.diverged_at, 2);
  EXPECT_EQ(r.skipped, 0);
}

// What a step replayed from a CUDA graph needs (train.cuda_graphs): the step number comes from a
// tensor set before the replay, and the state stays one tensor, updated in place.
TEST(StepHealth, StepNumberSetBeforehandAndStateUpdatedInPlace) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  train::StepHealth health(torch::kCPU, /*allowed_skips=*/2);
  const void* state = health.device_state().data_ptr();
  health.set_step(6);
  EXPECT_EQ(health.record(torch::full({1}, nan), torch::full({}, 1.0)).item<float>(), 1.0f);
  health.set_step(7);
  EXPECT_EQ(health.record(torch::full({1}, 2.0), torch::full({}, 1.0)).item<float>(), 0.0f);
  EXPECT_EQ(health.device_state().data_ptr(), state);
  const train::StepHealth::Reading r = health.read();
  EXPECT_EQ(r.first_new_skip, 7);  // step 6, 1-based
  EXPECT_EQ(r.loss, 2.0);
  EXPECT_EQ(health.device_state().data_ptr(), state);
}

}  // namespace
}  // namespace lofi
