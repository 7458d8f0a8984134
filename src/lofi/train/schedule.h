// The learning-rate schedule, a pure function of the step: linear warmup from 0 to the peak,
// then cosine decay to the floor at the last step.
#pragma once
#include <cstdint>

namespace lofi::train {

struct Schedule {
  double peak_lr;        // e.g. 3e-4
  double min_lr;         // e.g. 3e-5
  int64_t warmup_steps;  // e.g. 100
  int64_t total_steps;   // e.g. 5000
};

// LR for 0-based STEP.
double lr_at(const Schedule& s, int64_t step);

}  // namespace lofi::train
