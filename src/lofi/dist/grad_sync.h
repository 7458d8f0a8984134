// Gradient averaging inside a node, overlapped with backward: gradients are packed into ~25 MB
// buckets (in reverse registration order, the order backward produces them) by autograd hooks,
// and each full bucket's all-reduce starts while backward is still running.
// These hooks do the job of c10d::Reducer (the engine under PyTorch's DistributedDataParallel) on
// the node's process group (NCCL on GPU, Gloo on CPU), with lofi's byte counting and its errors
// naming the parameter that got no gradient; the buckets live on the worker's device.
// With gradient accumulation only the last micro-batch's backward synchronises (DDP's no_sync).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "lofi/dist/comm.h"

namespace lofi::dist {

class GradientSync {
 public:
  // OVERLAP false: one flat all-reduce after backward instead (the simple reference path).
  GradientSync(Comm& comm, const std::vector<torch::Tensor>& params, const std::vector<std::string>& names,
               bool overlap, double bucket_mb);
  ~GradientSync();

  // Call before each micro-batch's backward; SYNC marks the last one, whose gradients are averaged.
  void before_backward(bool sync);
  // Call after the last backward: waits for every bucket and writes the averages into .grad.
  void after_backward();
  // Buckets whose all-reduce has started in the current backward (tests observe the overlap).
  size_t buckets_launched() const { return next_launch_; }

 private:
  struct Bucket;
  void on_gradient(size_t param, const torch::Tensor& grad);
  void launch_ready_buckets();

  Comm& comm_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  bool overlap_;
  bool syncing_ = false;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<std::pair<size_t, int64_t>> slot_;  // param -> (bucket, offset in elements)
  std::vector<unsigned> hooks_;                   // hook handles, one per parameter
  size_t next_launch_ = 0;
};

}  // namespace lofi::dist
