// This process's host, and whether another process (by pid, on this host) still lives: what the
// run lock, temporaries of killed writers and node heartbeats are told apart by.
#pragma once
#include <cstdint>
#include <string>

namespace lofi::io {

std::string host_name();  // gethostname(), or "unknown-host"
// Signal 0 probes without signalling; EPERM means the pid lives under another user.
bool process_alive(long pid);
// Bytes of memory this host can give a new allocation without swapping (/proc/meminfo's
// MemAvailable); -1 where it cannot be read.
int64_t available_memory_bytes();

}  // namespace lofi::io
