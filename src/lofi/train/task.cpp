#include "lofi/train/task.h"

#include "lofi/error.h"
#include "lofi/train/image_task.h"
#include "lofi/train/lm_task.h"

namespace lofi::train {

std::string Task::probe_head(int64_t, double, int64_t) {
  fail("config: train.head_init = \"lp\" probes a re-initialised classification head; this model has none "
       "(a language model's head is its token embedding). Use train.head_init = \"random\"");
}

std::unique_ptr<Task> make_task(const Config& config, const dist::Topology& topo, uint64_t init_seed,
                                const torch::Device& device) {
  std::unique_ptr<Task> task;
  if (config.model.arch == "vit")
    task = std::make_unique<ImageTask>(config, topo, init_seed);
  else
    task = std::make_unique<LmTask>(config, topo, init_seed);
  task->model().to(device);
  task->set_device(device);
  return task;
}

}  // namespace lofi::train
