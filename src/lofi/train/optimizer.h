// AdamW with decoupled weight decay on matrices only (never on biases, norms or 1-d tensors), run
// by LibTorch's fused kernel (at::_fused_adamw_, on CPU and CUDA: what torch.optim.AdamW(fused=True)
// calls), and its state to and from named tensors so a checkpoint resumes exactly on any device.
// The state lives on the parameters' device; master weights and moments stay fp32 under bf16.
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

// Scales the gradients of PARAMS so their global L2 norm is at most MAX_NORM, as PyTorch's
// clip_grad_norm_(foreach=True): a few multi-tensor kernels and no device-to-host sync (LibTorch's
// C++ clip_grad_norm_ walks the tensors one by one and reads the norm back every step).
// Returns the global norm before clipping (a 0-dim tensor on the gradients' device).
torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);
// The global L2 norm of the gradients, without clipping.
torch::Tensor grad_norm(const std::vector<torch::Tensor>& params);

class Optimizer {
 public:
  Optimizer(const torch::nn::Module& module, const TrainConfig& config);

  void set_lr(double lr) { lr_ = lr; }
  // One AdamW update of every parameter that has a gradient. FOUND_INF (a () fp32 tensor on the
  // parameters' device, optional): where it holds 1 the update is skipped on the device, state and
  // step counts unchanged (as torch.optim.AdamW(fused=True) under a GradScaler), with no host sync.
  void step(const torch::Tensor& found_inf = {});
  // Drops the gradients (as LibTorch's set_to_none), so the next backward writes fresh ones.
  void zero_grad();
  const std::vector<NamedParam>& params() const { return params_; }

  // State as "NAME.exp_avg" / "NAME.exp_avg_sq" tensors plus each parameter's step in metadata.
  io::NamedTensors state(io::Metadata& metadata) const;
  void load_state(const io::SafetensorsFile& file);

 private:
  struct Slot {
    torch::Tensor exp_avg, exp_avg_sq, step;  // like the parameter; step: () fp32, as PyTorch's fused path
    bool decay = false;
  };
  std::vector<NamedParam> params_;
  std::vector<Slot> slots_;  // one per parameter; undefined tensors until its first step
  TrainConfig config_;
  double lr_;
};

}  // namespace lofi::train
