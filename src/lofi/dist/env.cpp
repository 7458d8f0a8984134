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

// Slurm's tasks-per-node forms: "4", "4(x2)", "4(x2),2": this host's count comes first when
// the job is homogeneous, which is what lofi's equal nodes need anyway.
int leading_int(const char* name, const char* value) {
  const std::string v = value;
  const size_t digits = v.find_first_not_of("0123456789");
  return parse_int(name, v.substr(0, digits).c_str(), 1);
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry, at the first comma outside brackets: "gpu[001-004,007],cpu1" -> "gpu[001-004,007]".
  size_t end = 0;
  for (int depth = 0; end < nodelist.size() && (nodelist[end] != ',' || depth > 0); ++end)
    depth += nodelist[end] == '[' ? 1 : nodelist[end] == ']' ? -1 : 0;
  const std::string entry = nodelist.substr(0, end);
  const size_t open = entry.find('[');
  if (open == std::string::npos) return entry;
  const size_t close = entry.find(']', open);
  if (close == std::string::npos) fail("SLURM_JOB_NODELIST='", nodelist, "': an unclosed '['");
  // The first of the ranges: "001-004,007" -> "001" (zero padding kept as Slurm writes it).
  const std::string ranges = entry.substr(open + 1, close - open - 1);
  const std::string first = ranges.substr(0, ranges.find_first_of(",-"));
  if (first.empty() || first.find_first_not_of("0123456789") != std::string::npos)
    fail("SLURM_JOB_NODELIST='", nodelist, "': expected host names like node[01-04], found '", entry, "'");
  return first_slurm_host(entry.substr(0, open) + first + entry.substr(close + 1));  // "r[1-2]-n[1-2]": twice
}

WorkerEnv worker_env_from_environment() {
  WorkerEnv env;
  if (get("RANK") || get("WORLD_SIZE")) {
    env.source = "torchrun";
    // Each worker of several needs its own RANK: without one, two would both be rank 0.
    if (!get("RANK") && get_int("WORLD_SIZE", 1, 1) > 1)
      fail("environment variable RANK is ", std::getenv("RANK") ? "empty" : "not set", " but WORLD_SIZE=", get("WORLD_SIZE"),
           ": give each worker its own RANK from 0 to WORLD_SIZE - 1 (as torchrun and lofi launch do)");
    env.rank = get_int("RANK", 0);
    env.world_size = get_int("WORLD_SIZE", 1, 1);
    env.local_rank = get_int("LOCAL_RANK", env.rank);
    env.local_world_size = get_int("LOCAL_WORLD_SIZE", env.world_size, 1);
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
    env.source = "slurm";
    env.rank = get_int("SLURM_PROCID", 0);
    env.world_size = get_int("SLURM_NTASKS", 1, 1);
    env.local_rank = get_int("SLURM_LOCALID", 0);
    const char* per_node = get("SLURM_NTASKS_PER_NODE") ? "SLURM_NTASKS_PER_NODE" : "SLURM_TASKS_PER_NODE";
    env.local_world_size = get(per_node) ? leading_int(per_node, get(per_node)) : 1;
    // Where torchrun's variables are not set, the job's first host hosts the store, at a port
    // derived from the job id (so two jobs sharing a host do not collide).
    if (!get("MASTER_ADDR") && get("SLURM_JOB_NODELIST")) env.master_addr = first_slurm_host(get("SLURM_JOB_NODELIST"));
    if (!get("MASTER_PORT") && get("SLURM_JOB_ID")) env.master_port = 20000 + get_int("SLURM_JOB_ID", 0) % 20000;
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
