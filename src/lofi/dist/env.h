// Where this worker stands: read from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), else Slurm's (SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID, SLURM_NTASKS_PER_NODE, SLURM_JOB_NODELIST, SLURM_JOB_ID), else Open MPI's; with
// none of them the worker runs alone. `lofi launch` sets torchrun's variables.
#pragma once
#include <cstdint>
#include <string>

namespace lofi::dist {

struct WorkerEnv {
  int rank = 0;                // global rank, 0..world_size-1
  int world_size = 1;          // processes in this job
  int local_rank = 0;          // rank on this machine
  int local_world_size = 1;    // processes on this machine
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "none"; // "torchrun", "slurm", "openmpi" or "none"
  bool agent_store = false;    // TORCHELASTIC_USE_AGENT_STORE: the launcher (torchrun's agent, lofi
                               // launch) hosts the store at MASTER_ADDR:MASTER_PORT; rank 0 joins it
};

// Reads the environment; a malformed variable is an error naming it. Under Slurm without
// MASTER_ADDR / MASTER_PORT: the first host of SLURM_JOB_NODELIST, port 20000 + SLURM_JOB_ID % 20000.
WorkerEnv worker_env_from_environment();

// The first host of a Slurm host list: "node[003-004,007],gpu1" -> "node003".
std::string first_slurm_host(const std::string& nodelist);

// Intra-op threads for this worker: LOFI_THREADS if set, else cores / local workers (at least 1).
int default_threads(const WorkerEnv& env);

}  // namespace lofi::dist
