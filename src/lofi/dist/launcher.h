// `lofi launch`: starts K local workers with torchrun's environment contract (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, and, as torchrun's agent, a rendezvous
// store it hosts itself on 127.0.0.1: TORCHELASTIC_USE_AGENT_STORE) plus LOFI_THREADS = cores / K,
// prefixes each worker's output with its rank, and forwards SIGINT/SIGTERM.
// The failure domain is the node: in a lo-fi job whose nodes never meet (their check-ins say so,
// dist/check_in.h), a worker that exits non-zero, or a node silent past dist.timeout_s, ends that
// node's workers only; the other nodes train on and merge. Anything else (the baseline, nodes that
// sync, a worker that fails before checking in) stops every worker at the first failure.
// Hand-written: it is process supervision, which no library here does.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace lofi::dist {

struct LaunchOptions {
  int workers = 1;               // K processes
  int threads = 0;               // intra-op threads per worker; 0: cores / K
  int master_port = 0;           // 0: a free port
  std::string program;           // executable; empty: this executable
  std::vector<std::string> args; // arguments for every worker
  std::vector<std::pair<std::string, std::string>> env;  // more variables for every worker
  bool prefix_output = true;     // "[rank k] " before each line
};

// Runs the workers to completion; returns 0, or the first failure's exit status (a node's failure
// included, after the surviving nodes finished), ending with a line naming the failed nodes and
// the survivors' merge.
int launch_workers(const LaunchOptions& options);

}  // namespace lofi::dist
