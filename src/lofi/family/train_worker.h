// One worker of a training job, whoever started it: `lofi train` (under `lofi launch`, torchrun or
// srun), or a worker the library launched itself (the demo's runs). The library's own way to start
// workers is a config file named in the worker's environment, so nothing below the CLI depends on
// the CLI's syntax.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lofi/train/config.h"
#include "lofi/train/trainer.h"

namespace lofi::family {

// Trains this worker's share of CONFIG's job, then ends the job (a node's Hugging Face output, a
// lo-fi job's merge); rank 0 prints the resolved config (unless QUIET) and a "done:" line.
void train_worker(const train::Config& config, const train::StartOptions& start, bool quiet);

// The variables that make a launched worker run the config at CONFIG_PATH (validated again by the
// worker), overwriting an older run there: for dist::LaunchOptions::env.
std::vector<std::pair<std::string, std::string>> worker_job(const std::string& config_path);
// In a worker launched so: runs it (as train_worker, quiet) and returns 0; elsewhere nothing.
std::optional<int> run_launched_worker();

}  // namespace lofi::family
