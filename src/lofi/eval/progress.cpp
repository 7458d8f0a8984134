#include "lofi/eval/progress.h"
#include "lofi/text.h"

#include <unistd.h>

#include <cstdio>

namespace lofi::eval {

Progress::Progress(std::string what, int64_t total, std::string unit, double quiet_s, double every_s)
    : what_(std::move(what)), unit_(std::move(unit)), total_(total), quiet_s_(quiet_s), every_s_(every_s),
      tty_(::isatty(STDERR_FILENO) != 0), start_(Clock::now()), last_(start_) {
  if (every_s_ < 0) every_s_ = tty_ ? 1.0 : 30.0;
}

Progress::~Progress() {
  if (drawn_ && tty_) std::fprintf(stderr, "\r\033[K");
}

void Progress::update(int64_t done) {
  const auto now = Clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (elapsed < quiet_s_ || done <= 0 || since < every_s_) return;
  last_ = now;
  const double eta = elapsed / static_cast<double>(done) * static_cast<double>(total_ - done);
  std::fprintf(stderr, "%s%s: %lld/%lld %s, ETA %s%s", tty_ ? "\r" : "", what_.c_str(), static_cast<long long>(done),
               static_cast<long long>(total_), unit_.c_str(), format_clock(eta).c_str(), tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace lofi::eval
