#include "lofi/family/train_worker.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "lofi/dist/comm.h"
#include "lofi/dist/env.h"
#include "lofi/family/family.h"
#include "lofi/io/temporaries.h"
#include "lofi/text.h"
#include "lofi/train/job_end.h"

namespace lofi::family {
namespace {

constexpr const char* kConfigVariable = "LOFI_WORKER_CONFIG";  // the config file a launched worker runs

std::string done_line(const train::TrainSummary& s) {
  if (s.steps_run == 0)  // resumed at its last step: no loss of this start to report
    return cat("done: node ", s.node, ", no steps left (its checkpoint is at step ", s.steps, " of ", s.steps, ")");
  return cat("done: node ", s.node, ", ", s.steps, " steps in ", format_seconds(s.seconds, 1), ", final loss ",
             format_fixed(s.final_loss, 4), ", bytes sent ",
             s.bytes_within_node + s.bytes_between_nodes, " (between nodes ", s.bytes_between_nodes, ")");
}

}  // namespace

void train_worker(const train::Config& config, const train::StartOptions& start, bool quiet) {
  io::stop_gracefully_on_signals();  // a first signal checkpoints and stops at the next read
  const dist::WorkerEnv env = dist::worker_env_from_environment();
  if (env.rank == 0 && !quiet) std::cout << "# resolved config\n" << train::to_toml(config) << std::flush;
  // The memory plan, before anything is loaded: a run that will not fit stops here.
  const dist::Topology topo = dist::make_topology(env, config.dist.nodes, config.dist.node_id);
  if (const auto plan = memory_plan(config, topo.node_size, env.local_world_size, env.local_rank)) {
    if (env.rank == 0) std::printf("%s\n", train::memory_plan_line(*plan).c_str());
    if (config.train.memory_check) train::refuse_unless_fits(*plan);
    else if (!plan->fits() && env.rank == 0)
      std::printf("memory plan: it does not fit (train.memory_check = false: starting anyway)\n");
  }
  train::TrainedWorker worker = train::run_training(config, env, make_task, start);
  train::finish_job(config, worker);  // the node's Hugging Face output, or a lo-fi job's merge
  if (env.rank == 0) std::printf("%s\n", done_line(worker.summary).c_str());
}

std::vector<std::pair<std::string, std::string>> worker_job(const std::string& config_path) {
  return {{kConfigVariable, config_path}};
}

std::optional<int> run_launched_worker() {
  const char* path = std::getenv(kConfigVariable);
  if (!path) return std::nullopt;
  const std::string config_path = path;
  ::unsetenv(kConfigVariable);  // not inherited by anything this worker starts
  train::StartOptions start;
  start.mode = run::StartMode::overwrite;  // the launching code owns its runs
  train_worker(train::load_config(config_path, {}), start, /*quiet=*/true);
  return 0;
}

}  // namespace lofi::family
