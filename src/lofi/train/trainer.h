// The training job of one worker: places itself among nodes, trains its node's replica
// (all-reducing gradients inside the node only), writes metrics, checkpoints and the node's
// final weights, and, at the end of a whole lo-fi job, the merged average of the nodes that
// finished (train/job_merge.h). A non-finite loss or gradient norm stops the node.
#pragma once
#include <string>

#include "lofi/dist/env.h"
#include "lofi/model/causal_lm.h"
#include "lofi/train/config.h"
#include "lofi/train/run_dir.h"

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
// The model.init the checkpoint's run started from, as its "lofi.config" records it (a Hugging
// Face directory there lends its config.json keys and tokenizer); empty when there is none.
std::string pretrained_source(const std::string& checkpoint);

struct StartOptions {
  StartMode mode = StartMode::fresh;  // resume: from the newest checkpoint that verifies
  bool allow_changed = false;         // resume with settings that change the trajectory (--resume-changed)
};

// Runs this worker's part of the job.
TrainSummary run_training(const Config& config, const dist::WorkerEnv& env, const StartOptions& start = {});

}  // namespace lofi::train
