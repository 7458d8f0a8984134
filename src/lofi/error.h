// lofi::Error: what library code throws. Messages name the file, key or tensor, what was
// expected and what was found; `main` prints the message on one line and exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace lofi {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// cat("a", 1, "b") -> "a1b": builds error messages without iostream boilerplate at call sites.
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace lofi
