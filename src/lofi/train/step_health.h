// Whether the training steps stay finite, kept on the device so a step never waits for the host:
// each step's loss and gradient norm, the non-finite steps skipped (up to train.skip_nonfinite),
// and the first one past that allowance. A non-finite step's update is skipped on the device (the
// fused AdamW's found_inf); read() brings everything to the host in one copy, every
// train.log_every steps, and the run stops there if the allowance was passed, naming the step.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace lofi::train {

class StepHealth {
 public:
  struct Reading {
    double loss = 0, grad_norm = 0;             // the last recorded step's
    int64_t skipped = 0;                        // non-finite steps skipped so far (at most the allowance)
    int64_t new_skips = 0, first_new_skip = 0;  // skipped since the previous read; the first of them (1-based)
    int64_t diverged_at = 0;                    // the first non-finite step past the allowance (1-based); 0: none
    double diverged_loss = 0, diverged_norm = 0;  // its loss and gradient norm
  };

  StepHealth(const torch::Device& device, int64_t allowed_skips);
  // The step (0-based) the next record() is of: a fill of a tensor on the device, made before a
  // captured step is replayed (train.cuda_graphs), since a replay sees no host numbers.
  void set_step(int64_t step);
  // Records the set step with the node's LOSS (one element) and gradient NORM (one element), in
  // place on the device (what a replay of a captured step reads and writes). Returns found_inf for
  // the optimizer: a () fp32 tensor on the device, 1 when this step's update must be skipped.
  torch::Tensor record(const torch::Tensor& loss, const torch::Tensor& norm);
  torch::Tensor record(int64_t step, const torch::Tensor& loss, const torch::Tensor& norm) {
    set_step(step);
    return record(loss, norm);
  }
  // The state on the host (one device-to-host copy; waits for the queued steps).
  Reading read();
  const Reading& last() const { return last_; }
  // The device-side state (8 fp64 values): one tensor for the whole run, which record() and read()
  // update in place (a replayed step writes where its recording did).
  const torch::Tensor& device_state() const { return state_; }

 private:
  torch::Device device_;
  int64_t allowed_;
  // (8) fp64: loss, norm, skipped, first_new_skip, new_skips, diverged_at, diverged_loss, diverged_norm
  torch::Tensor state_;
  torch::Tensor at_;  // () fp64: the set step, 1-based
  Reading last_;
};

}  // namespace lofi::train
