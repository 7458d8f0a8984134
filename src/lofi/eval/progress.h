// A progress line on stderr for long evaluations: "scoring: 1200/5000 windows, ETA 0:00:12",
// redrawn in place about once a second on a terminal, a plain line every 30 s otherwise; silent
// for work that ends within its first two seconds.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace lofi::eval {

class Progress {
 public:
  // Silent for the first QUIET_S seconds; then a line at most every EVERY_S seconds (< 0: 1 s on a
  // terminal, 30 s otherwise).
  Progress(std::string what, int64_t total, std::string unit, double quiet_s = 2, double every_s = -1);
  ~Progress();  // clears a line drawn in place
  void update(int64_t done);

 private:
  using Clock = std::chrono::steady_clock;
  std::string what_, unit_;
  int64_t total_;
  double quiet_s_, every_s_;
  bool tty_, drawn_ = false;
  Clock::time_point start_, last_;
};

}  // namespace lofi::eval
