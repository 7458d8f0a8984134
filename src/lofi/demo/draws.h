// A counter-based random stream for the generated demo data: the n-th draw is mix_seed(seed, n),
// so output is identical on every platform and thread count (std:: distributions are not).
// Shared by the text and image generators.
#pragma once
#include <cmath>
#include <cstdint>

#include "lofi/seed.h"

namespace lofi::demo {

class Draws {
 public:
  explicit Draws(uint64_t seed) : seed_(seed) {}
  uint64_t next() { return mix_seed(seed_, counter_++); }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
  template <size_t N>
  const char* pick(const char* const (&words)[N]) { return words[below(N)]; }
  // Uniform in [0, 1) from the top 53 bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool coin(double p = 0.5) { return uniform() < p; }
  // Standard normal by Box-Muller (one value per call; the second is dropped for simplicity).
  double normal() {
    double u = 1.0 - uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }

 private:
  uint64_t seed_, counter_ = 0;
};

}  // namespace lofi::demo
