// Checkpoints for --resume: NODE_DIR/ckpt/step-000500.safetensors (weights, with the run's config
// in its metadata) beside step-000500.optim.safetensors (AdamW state, parameter steps in its
// metadata). The weights file is written last, so a checkpoint whose weights exist is complete;
// each file carries the checksum of its data, so a damaged one is told from a good one.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>
#include "lofi/train/optimizer.h"
#include "lofi/train/outer_optimizer.h"

namespace lofi::train {

struct CheckpointPaths {
  int64_t step = 0;
  std::string weights, optimizer;
};

CheckpointPaths checkpoint_paths(const std::string& node_dir, int64_t step);
// The complete checkpoints in NODE_DIR/ckpt, oldest first.
std::vector<CheckpointPaths> list_checkpoints(const std::string& node_dir);
// The newest complete checkpoint in NODE_DIR/ckpt, if any (not verified).
std::optional<CheckpointPaths> latest_checkpoint(const std::string& node_dir);
// Throws naming the file when either file of PATHS is unreadable, truncated or damaged.
void verify_checkpoint(const CheckpointPaths& paths);
// The newest checkpoint that verifies; a damaged newer one is passed over, saying so when VERBOSE.
// Throws when there are checkpoints but none verifies.
std::optional<CheckpointPaths> newest_valid_checkpoint(const std::string& node_dir, bool verbose);
// The config text the checkpoint was trained with ("lofi.config"; empty for older checkpoints).
std::string checkpoint_config(const CheckpointPaths& paths);

// Removes NODE_DIR/ckpt and everything in it.
void remove_checkpoints(const std::string& node_dir);
// Keeps the newest KEEP checkpoints (0: all).
void prune_checkpoints(const std::string& node_dir, int64_t keep);

// CONFIG_TOML (the run's resolved config) goes into the weights file's metadata; OUTER's state
// (DiLoCo's, when the run has one) into the optimizer file beside AdamW's.
void save_checkpoint(const std::string& node_dir, int64_t step, const torch::nn::Module& module,
                     const Optimizer& optimizer, const std::string& config_toml, const OuterOptimizer* outer = nullptr);
// Loads weights and optimizer state (and OUTER's, when given); returns the step to continue from.
int64_t load_checkpoint(const CheckpointPaths& paths, torch::nn::Module& module, Optimizer& optimizer,
                        OuterOptimizer* outer = nullptr);

}  // namespace lofi::train
