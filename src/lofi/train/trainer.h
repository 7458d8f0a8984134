// The training job of one worker: places itself among nodes, trains its node's replica
// (all-reducing gradients inside the node only), writes metrics, checkpoints and the node's
// final weights, and, as rank 0 of a whole lo-fi job, the merged average.
#pragma once
#include <string>

#include "lofi/dist/env.h"
#include "lofi/model/causal_lm.h"
#include "lofi/train/config.h"

namespace lofi::train {

struct TrainSummary {
  int64_t node = 0;
  int64_t steps = 0;
  double seconds = 0;
  double final_loss = 0;
  int64_t bytes_within_node = 0;
  int64_t bytes_between_nodes = 0;
};

// A model of CONFIG.arch: MODEL.init's weights when set (a safetensors file, or a Hugging Face
// directory whose config.json then gives the shape), else the usual init seeded by SEED.
model::CausalLm make_model(const ModelConfig& config, uint64_t seed);

// The config a lofi checkpoint was trained with (its "lofi.config" metadata), with model.init
// pointing at PATH, so make_model() rebuilds the model.
Config config_from_checkpoint(const std::string& path);

std::string node_dir(const std::string& run_dir, int64_t node);

// Runs this worker's part of the job. RESUME continues from the newest checkpoint.
TrainSummary run_training(const Config& config, const dist::WorkerEnv& env, bool resume);

}  // namespace lofi::train
