// `lofi launch`: starts K local workers with torchrun's environment contract (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, and, as torchrun's agent, a rendezvous
// store it hosts itself: TORCHELASTIC_USE_AGENT_STORE) plus LOFI_THREADS = cores / K, prefixes
// each worker's output with its rank, forwards SIGINT/SIGTERM, and fails with the first non-zero
// exit (stopping the others). Hand-written: it is process supervision, which no library here does.
#pragma once
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <string>
#include <vector>

namespace lofi::dist {

struct LaunchOptions {
  int workers = 1;               // K processes
  int threads = 0;               // intra-op threads per worker; 0: cores / K
  int master_port = 0;           // 0: a free port
  std::string program;           // executable; empty: this executable
  std::vector<std::string> args; // arguments for every worker
  bool prefix_output = true;     // "[rank k] " before each line
};

// Runs the workers to completion; returns 0, or the first non-zero exit status.
int launch_workers(const LaunchOptions& options);

// A TCPStore server on 127.0.0.1:PORT (0: a free port the kernel picks), as torchrun's agent hosts
// one for its workers (they join it with TORCHELASTIC_USE_AGENT_STORE=True); store_port() tells
// which port it got.
c10::intrusive_ptr<c10d::Store> host_rendezvous_store(int port);
int store_port(const c10::intrusive_ptr<c10d::Store>& store);

}  // namespace lofi::dist
