#include "lofi/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace lofi::train {

double lr_at(const Schedule& s, int64_t step) {
  if (step < s.warmup_steps) return s.peak_lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  int64_t decay_steps = std::max<int64_t>(1, s.total_steps - s.warmup_steps - 1);
  double progress = std::min(1.0, static_cast<double>(step - s.warmup_steps) / static_cast<double>(decay_steps));
  return s.min_lr + 0.5 * (s.peak_lr - s.min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace lofi::train
