// Checkpoints for --resume: NODE_DIR/ckpt/step-000500.safetensors (weights) beside
// step-000500.optim.safetensors (AdamW state, parameter steps in its metadata). The weights
// file is written last, so a checkpoint whose weights exist is complete.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <torch/torch.h>
#include "lofi/train/optimizer.h"

namespace lofi::train {

struct CheckpointPaths {
  int64_t step = 0;
  std::string weights, optimizer;
};

CheckpointPaths checkpoint_paths(const std::string& node_dir, int64_t step);
// The newest complete checkpoint in NODE_DIR/ckpt, if any.
std::optional<CheckpointPaths> latest_checkpoint(const std::string& node_dir);

// Removes NODE_DIR/ckpt and everything in it.
void remove_checkpoints(const std::string& node_dir);

void save_checkpoint(const std::string& node_dir, int64_t step, const torch::nn::Module& module,
                     const Optimizer& optimizer);
// Loads weights and optimizer state; returns the step to continue from.
int64_t load_checkpoint(const CheckpointPaths& paths, torch::nn::Module& module, Optimizer& optimizer);

}  // namespace lofi::train
