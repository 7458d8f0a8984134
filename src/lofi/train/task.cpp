#include "lofi/train/task.h"

#include "lofi/train/image_task.h"
#include "lofi/train/lm_task.h"

namespace lofi::train {

std::unique_ptr<Task> make_task(const Config& config, const dist::Topology& topo, uint64_t init_seed) {
  if (config.model.arch == "vit") return std::make_unique<ImageTask>(config, topo, init_seed);
  return std::make_unique<LmTask>(config, topo, init_seed);
}

}  // namespace lofi::train
