#include "lofi/train/step_graphs.h"

#include <cstdlib>

#include "lofi/error.h"
#include "lofi/text.h"

namespace lofi::train {

bool cuda_graphs_eager() {
  const char* v = std::getenv("LOFI_CUDA_GRAPHS_EAGER");
  return v && *v && std::string(v) != "0";
}

std::string cuda_graphs_refusal(const Config& config, const dist::Topology& topo, const torch::Device& device, const Task& task) {
  if (!config.train.cuda_graphs) return "";
  const std::string off = ", or set train.cuda_graphs = false";
  if (const std::string why = task.graph_refusal(); !why.empty())
    return cat("train.cuda_graphs = true replays each micro-batch from one recording, and ", why,
               ": set train.cuda_graphs = false");
  if (config.model.num_experts > 0)
    return cat("train.cuda_graphs = true replays one recording of the step, and a mixture of experts (model.num_experts = ",
               config.model.num_experts, ") reads on the host how many tokens each expert takes, every step", off);
  if (topo.node_size > 1)
    return cat("train.cuda_graphs = true runs nodes of one worker, and node ", topo.node, " has ", topo.node_size,
               " (their gradient all-reduce is not recorded): run one worker per node (dist.nodes = the workers)", off);
  if (!device.is_cuda() && !cuda_graphs_eager())
    return cat("train.cuda_graphs = true records the step's GPU kernels, but this worker computes on ", device.str(),
               ": run on a GPU (train.device = \"cuda\")", off);
  return "";
}

StepGraphs::StepGraphs(const torch::Device& device, Addresses addresses)
    : device_(device), eager_(cuda_graphs_eager()), addresses_(std::move(addresses)) {}

void StepGraphs::finish(const std::function<void()>& work) {
  run(tail_, work, micro_.get());  // the tail's temporaries may reuse what backward freed
  ++steps_;
}

void StepGraphs::check_addresses() const {
  if (addresses_() != recorded_)
    fail("internal: train.cuda_graphs: a tensor that the recorded step reads (the staged micro-batch, a gradient, the "
         "step's loss or state) has moved since the step was recorded, so a replay would read freed memory; set "
         "train.cuda_graphs = false");
}

void StepGraphs::run(std::unique_ptr<dist::CapturedWork>& graph, const std::function<void()>& work,
                     const dist::CapturedWork* share) {
  if (steps_ == 0) return dist::run_on_capture_stream(device_, work);  // the warm-up
  if (recorded_.empty()) recorded_ = addresses_();  // at the first recording (the first micro-batch's)
  check_addresses();
  if (eager_) return dist::run_on_capture_stream(device_, work);
  if (!graph) {
    try {
      graph = std::make_unique<dist::CapturedWork>(device_, work, share);
    } catch (const Error& e) {
      fail("train.cuda_graphs = true: ", e.what(), "; set train.cuda_graphs = false");
    }
  }
  graph->replay();
}

}  // namespace lofi::train
