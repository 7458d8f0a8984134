#include "lofi/io/process.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

namespace lofi::io {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

bool process_alive(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

}  // namespace lofi::io
