// train.cuda_graphs: a training step replayed from CUDA graphs. The step's GPU work is two pieces,
// each recorded once and then replayed: a micro-batch's forward and backward (replayed once per
// micro-batch, after the task has staged it and the dropout seed is set), and the rest (gradient
// norm and clipping, the finite check, AdamW). The first step of a start runs them eagerly on the
// capture stream (a warm-up: gradients, optimizer state and cuBLAS's workspace are made there),
// the second records and replays them, every later one replays. What a step reads from the host
// (batch, learning rate, step number, seed) reaches the device before the replay, into tensors
// the recording saw (Task::stage, Optimizer::hold_for_graphs, StepHealth::set_step).
// LOFI_CUDA_GRAPHS_EAGER=1 runs that staged step with nothing recorded, the pieces run as they
// are at every step (on a CPU too): a debugging aid, where a difference from the recorded run is
// the recording's, and how the tests check the staging on machines without a GPU.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lofi/dist/comm.h"
#include "lofi/dist/cuda_graph.h"
#include "lofi/train/config.h"
#include "lofi/train/task.h"

namespace lofi::train {

// Whether LOFI_CUDA_GRAPHS_EAGER asks for the staged step without recordings.
bool cuda_graphs_eager();
// Why a worker of TOPO on DEVICE cannot run TASK's steps from CUDA graphs under CONFIG: one line
// naming train.cuda_graphs and what to change; "" where it can (or where train.cuda_graphs is off).
// With LOFI_CUDA_GRAPHS_EAGER any device can.
std::string cuda_graphs_refusal(const Config& config, const dist::Topology& topo, const torch::Device& device, const Task& task);

class StepGraphs {
 public:
  // ADDRESSES: where the tensors that the pieces read and write between steps live (the staged
  // micro-batch, the gradients, the step's loss and state). From the recording on, each replay
  // checks that none has moved (with LOFI_CUDA_GRAPHS_EAGER too, from the step that would record).
  using Addresses = std::function<std::vector<const void*>()>;
  StepGraphs(const torch::Device& device, Addresses addresses);
  // One micro-batch's forward and backward (WORK), the task's micro-batch staged before.
  void micro(const std::function<void()>& work) { run(micro_, work, nullptr); }
  // The step's work after the micro-batches (WORK); then the step is over.
  void finish(const std::function<void()>& work);

 private:
  void run(std::unique_ptr<dist::CapturedWork>& graph, const std::function<void()>& work, const dist::CapturedWork* share);
  // Fails where a tensor of ADDRESSES has moved since the recording.
  void check_addresses() const;

  torch::Device device_;
  bool eager_;  // LOFI_CUDA_GRAPHS_EAGER
  Addresses addresses_;
  std::vector<const void*> recorded_;  // ADDRESSES at the recording
  int64_t steps_ = 0;
  std::unique_ptr<dist::CapturedWork> micro_, tail_;
};

}  // namespace lofi::train
