#include "lofi/dist/env.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "lofi/error.h"

namespace lofi::dist {
namespace {

const char* get(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int parse_int(const char* name, const char* value, int min) {
  char* end = nullptr;
  long v = std::strtol(value, &end, 10);
  if (*end || v < min || v > 1 << 24) fail("environment variable ", name, "='", value, "': expected an integer >= ", min);
  return static_cast<int>(v);
}

int get_int(const char* name, int fallback, int min = 0) {
  const char* v = get(name);
  return v ? parse_int(name, v, min) : fallback;
}

}  // namespace

WorkerEnv worker_env_from_environment() {
  WorkerEnv env;
  if (get("RANK") || get("WORLD_SIZE")) {
    env.source = "torchrun";
    env.rank = get_int("RANK", 0);
    env.world_size = get_int("WORLD_SIZE", 1, 1);
    env.local_rank = get_int("LOCAL_RANK", env.rank);
    env.local_world_size = get_int("LOCAL_WORLD_SIZE", env.world_size, 1);
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
    env.source = "slurm";
    env.rank = get_int("SLURM_PROCID", 0);
    env.world_size = get_int("SLURM_NTASKS", 1, 1);
    env.local_rank = get_int("SLURM_LOCALID", 0);
    env.local_world_size = get_int("SLURM_NTASKS_PER_NODE", 1, 1);
  } else if (get("OMPI_COMM_WORLD_RANK") && get("OMPI_COMM_WORLD_SIZE")) {
    env.source = "openmpi";
    env.rank = get_int("OMPI_COMM_WORLD_RANK", 0);
    env.world_size = get_int("OMPI_COMM_WORLD_SIZE", 1, 1);
    env.local_rank = get_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    env.local_world_size = get_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1);
  }
  if (env.rank >= env.world_size)
    fail("worker rank ", env.rank, " is not below the world size ", env.world_size, " (from ", env.source, "'s environment)");
  if (const char* addr = get("MASTER_ADDR")) env.master_addr = addr;
  env.master_port = get_int("MASTER_PORT", env.master_port, 1);
  if (const char* agent = get("TORCHELASTIC_USE_AGENT_STORE")) {
    const std::string v = agent;
    if (v != "True" && v != "true" && v != "1" && v != "False" && v != "false" && v != "0")
      fail("environment variable TORCHELASTIC_USE_AGENT_STORE='", v, "': expected True or False");
    env.agent_store = v == "True" || v == "true" || v == "1";
  }
  if (env.master_port > 65535) fail("environment variable MASTER_PORT=", env.master_port, ": expected a port below 65536");
  return env;
}

int default_threads(const WorkerEnv& env) {
  if (const char* v = get("LOFI_THREADS")) return parse_int("LOFI_THREADS", v, 1);
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, env.local_world_size));
}

}  // namespace lofi::dist
