// AdamW with decoupled weight decay on matrices only (never on biases, norms or 1-d tensors),
// and its state to and from named tensors so a checkpoint can be resumed exactly.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

#include "lofi/io/safetensors.h"
#include "lofi/train/config.h"

namespace lofi::train {

struct NamedParam {
  std::string name;
  torch::Tensor param;
};

class Optimizer {
 public:
  Optimizer(const torch::nn::Module& module, const TrainConfig& config);

  void set_lr(double lr);
  void step() { adamw_->step(); }
  void zero_grad() { adamw_->zero_grad(); }
  const std::vector<NamedParam>& params() const { return params_; }

  // State as "NAME.exp_avg" / "NAME.exp_avg_sq" tensors plus each parameter's step in metadata.
  io::NamedTensors state(io::Metadata& metadata) const;
  void load_state(const io::SafetensorsFile& file);

 private:
  std::vector<NamedParam> params_;
  std::unique_ptr<torch::optim::AdamW> adamw_;
};

}  // namespace lofi::train
