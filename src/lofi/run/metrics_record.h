// One line of a node's metrics.jsonl, as the trainer writes it and the report and the demo read
// it: one schema, and what a run's workers sent computed from it in one place.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lofi/run/run_dir.h"

namespace lofi::run {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, grad_norm = 0, lr = 0;
  std::string unit = "tokens";  // what a sample counts: "tokens" or "images" (the keys UNIT and UNIT_per_s)
  int64_t units_seen = 0;       // by this node, since the run began
  double seconds = 0;           // training time of this start
  double units_per_s = 0;
  int64_t bytes_within_node = 0, bytes_between_nodes = 0;  // sent by one worker of the node
  int64_t node_workers = 1;
  int64_t skipped_nonfinite = 0;  // steps skipped so far (written when > 0)
  int64_t diverged_at_step = 0;   // the step a run diverged at (written when > 0)
  std::optional<int64_t> peak_memory_bytes;  // on a GPU
  std::optional<int64_t> peak_rss_bytes;     // on a CPU: the worker's peak resident memory so far
  // The same peaks when the worker's start ended (the model built, loaded, sharded; before step 1).
  std::optional<int64_t> start_peak_memory_bytes, start_peak_rss_bytes;
  // What this worker holds of AdamW's state, the gradients and the trainable parameters between
  // steps (dist.shard splits them).
  std::optional<int64_t> optimizer_state_bytes, gradient_bytes, parameter_bytes;
  std::map<std::string, double> validation;  // the periodic evaluation's "val_*" numbers

  nlohmann::json to_json() const;
  // A record as to_json writes it (null numbers, as a diverged run logs NaN, read as NaN); nothing
  // when J has no step.
  static std::optional<StepMetrics> from_json(const nlohmann::json& j);
};

// What all workers of a run sent and how long its slowest node took, from each node's last record
// (ring all-reduce: every worker of a node sends alike).
struct RunTraffic {
  double total = 0;          // bytes, all workers
  double between_nodes = 0;  // bytes, all workers
  double workers = 0;        // all nodes' workers
  double seconds = 0;        // the slowest node's training time
};
RunTraffic run_traffic(const std::vector<std::vector<StepMetrics>>& node_records);
// The same from RUN's node-*/metrics.jsonl; a node without a record is refused by name.
RunTraffic run_traffic(const RunDir& run);

// The records of a metrics.jsonl, in order; lines that are not records are skipped.
std::vector<StepMetrics> read_metrics(const std::string& path);

}  // namespace lofi::run
