// This process's host, and whether another process (by pid, on this host) still lives: what the
// run lock, temporaries of killed writers and node heartbeats are told apart by.
#pragma once
#include <string>

namespace lofi::io {

std::string host_name();  // gethostname(), or "unknown-host"
// Signal 0 probes without signalling; EPERM means the pid lives under another user.
bool process_alive(long pid);

}  // namespace lofi::io
