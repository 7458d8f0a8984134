#pragma once
// DiLoCo's outer step (Douillard et al., "DiLoCo: Distributed Low-Communication Training of
// Language Models", 2023): every dist.sync_every steps the nodes' weights are averaged, and the
// average is read as one step from the weights of the last sync. The pseudo-gradient
// g = anchor - mean drives SGD with Nesterov momentum on the anchor (LibTorch's torch::optim::SGD,
// as DiLoCo's reference drives torch.optim.SGD(nesterov=True)):
//   m = mu * m + g        (m = g at the first sync)
//   anchor -= lr * (g + mu * m)
// and every worker continues from the new anchor. The state (anchor, momentum) is identical on
// every worker and goes into each node's checkpoint, so a resumed run takes the same steps.
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "lofi/io/safetensors.h"
#include "lofi/train/optimizer.h"

namespace lofi::train {

class OuterOptimizer {
 public:
  // PARAMS as they are now: the anchor until the first sync.
  OuterOptimizer(const std::vector<NamedParam>& params, double lr, double momentum);
  // PARAMS hold the nodes' mean (after the all-reduce); they leave holding the new anchor.
  void step(const std::vector<NamedParam>& params);
  // "outer.anchor.NAME" and, after the first sync, "outer.momentum.NAME".
  io::NamedTensors state() const;
  void load_state(const io::SafetensorsFile& file);

 private:
  std::vector<std::string> names_;
  std::vector<torch::Tensor> anchor_;  // detached copies, on the parameters' device
  std::unique_ptr<torch::optim::SGD> sgd_;
};

}  // namespace lofi::train
