// What both halves of the demo do with a training run: launch it under local workers from a
// config, and read back how many bytes its workers sent.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "lofi/train/config.h"

namespace lofi::demo {

// Writes CONFIG as OUT/NAME.toml and runs `lofi train` on it under WORKERS local workers;
// returns the wall time in seconds. Throws naming the run when it fails.
double launch_training(const train::Config& config, const std::string& out, const std::string& name, int workers);

// Bytes sent by all workers of a run, from each node leader's last metrics line.
struct Traffic {
  double total = 0, between_nodes = 0;
};
Traffic run_traffic(const std::string& run_dir);

// One half's results: the table as text, a section for results.md, rows for results.json.
struct DemoSection {
  std::string table;
  std::string markdown;
  nlohmann::json json;
};

}  // namespace lofi::demo
