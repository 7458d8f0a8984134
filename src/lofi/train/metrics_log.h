#pragma once
// A node's metrics: one JSON object per line in NODE/metrics.jsonl and, unless
// train.tensorboard = false, the same numbers as TensorBoard scalars in NODE/events.out.tfevents.*
// (train/loss, train/lr, train/tokens_per_s, val/loss, comm/bytes_between_nodes, ...).
#include <cstdint>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "lofi/run/run_dir.h"

namespace lofi::tensorboard {
class EventWriter;
}

namespace lofi::train {

// The TensorBoard tag of a metrics.jsonl key: val_X -> val/X, bytes_X -> comm/bytes_X, else train/X.
std::string tensorboard_tag(const std::string& key);

class MetricsLog {
 public:
  // On resume (resume_step > 0) the lines past the checkpoint go, and TensorBoard is told to drop
  // its scalars past it.
  MetricsLog(const run::NodeDir& node, int64_t resume_step, bool tensorboard);
  ~MetricsLog();
  void write(const nlohmann::json& record);  // needs "step"; every other number is a scalar

 private:
  std::string path_;
  std::ofstream out_;
  std::unique_ptr<tensorboard::EventWriter> events_;
};

}  // namespace lofi::train
