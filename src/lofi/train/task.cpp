#include "lofi/train/task.h"

#include "lofi/error.h"

namespace lofi::train {

std::string Task::probe_head(int64_t, double, int64_t) {
  fail("config: train.head_init = \"lp\" probes a re-initialised classification head; this model has none "
       "(a language model's head is its token embedding). Use train.head_init = \"random\"");
}

std::string Task::graph_refusal() const { return "this task's micro-batches are not staged at fixed addresses"; }

void Task::stage(int64_t, int64_t) { fail("internal: this task stages no micro-batches (", graph_refusal(), ")"); }

torch::Tensor Task::staged_loss() { fail("internal: this task stages no micro-batches (", graph_refusal(), ")"); }

bool Task::write_hf_output(const std::string&, const std::string&) const { return false; }

std::vector<int64_t> Task::blocks_of(const std::vector<torch::Tensor>&) const { return {}; }

void Task::set_block_hooks(model::BlockHooks) {}

bool starts_sharded(const Config& config, const dist::Topology& topo) {
  return config.dist.shard == "full" && topo.node_size > 1 && config.train.head_init != "lp";
}

}  // namespace lofi::train
