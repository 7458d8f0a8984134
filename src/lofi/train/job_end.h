// The end of a job, after each worker's run_training (train/trainer.h): one named step that the
// CLI calls, so that the worker trains and returns, and ending the job is not its business.
// - A node's own result: a run from a Hugging Face directory gets NODE/final-hf beside its final
//   (the task writes it).
// - A whole lo-fi job (dist.nodes > 1, nodes never meeting): each node leader waits until every
//   other node has finished or failed (dist/node_status.h: from the run directory, not the
//   rendezvous store, which may have died with rank 0), and the lowest-numbered finished node
//   averages the finished nodes into RUN/merged.safetensors with the merge engine that `lofi
//   average` runs (merge/engine.h), naming the failed ones in its metadata; a Hugging Face
//   directory's run gets RUN/merged-hf beside it. Fewer than dist.min_nodes finished (default:
//   all) is an error that leaves every survivor's final on disk. The merging node then checks
//   that averaging was safe (train/averaging_check.h) when the task has validation data, and
//   records the verdict in RUN/averaging-check.json.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "lofi/train/config.h"
#include "lofi/train/trainer.h"

namespace lofi::train {

// Ends the job for WORKER, whose training is done (nothing to do on a node's other workers).
// Returns the averaging check's verdict when this node merged and checked, else null.
nlohmann::json finish_job(const Config& config, TrainedWorker& worker);

}  // namespace lofi::train
