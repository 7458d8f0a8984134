// What both halves of the demo do with a training run: launch it under local workers from a
// config, and read back how many bytes its workers sent.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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

// The comparison at the heart of both halves: FT run as the baseline (one node of WORKERS workers,
// in OUT/baseline) and as lo-fi (WORKERS nodes of one worker, in OUT/lofi), with one global batch
// and step count; LABEL prefixes the progress lines.
struct Comparison {
  double baseline_seconds = 0, lofi_seconds = 0;
  Traffic baseline_traffic, lofi_traffic;
  std::string baseline_final;            // OUT/baseline/node-00/final.safetensors
  std::vector<std::string> node_finals;  // OUT/lofi/node-k/final.safetensors
  std::string lofi_average;              // OUT/lofi/merged.safetensors
};
Comparison run_baseline_and_lofi(const train::Config& ft, const std::string& out, int workers, const std::string& label);

// One half's results: the table as text, a section for results.md, rows for results.json.
struct DemoSection {
  std::string title;
  std::string table;
  std::string markdown;
  nlohmann::json json;
};

}  // namespace lofi::demo
