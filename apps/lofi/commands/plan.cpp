// lofi plan: the memory plan of a training config, per worker, against the device's memory.
#include <cstdio>

#include "../command.h"
#include "../options.h"
#include "lofi/error.h"
#include "lofi/family/family.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/io/safetensors_set.h"
#include "lofi/train/config.h"
#include "lofi/train/trainer.h"

namespace lofi::cli {
namespace {

class Plan : public Command {
 public:
  std::string name() const override { return "plan"; }
  std::string summary() const override {
    return "Print a training config's memory plan per worker (weights, gradients, AdamW state, activations) and "
           "whether it fits";
  }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("--config,-c", config_path_, "TOML config file (as lofi train takes it)")->check(CLI::ExistingFile);
    cmd.add_option("--set", sets_, "override a config key: section.key=value (repeatable)");
    cmd.add_option("--workers,-k", workers_, "workers in all, as lofi launch --workers K (each of dist.nodes nodes gets K / nodes)")
        ->check(kPositive);
    cmd.add_option("--local-workers", local_workers_, "of them on this machine (default: all)")->check(kPositive);
    cmd.footer("Exit status 0 when the plan fits the device, 1 when it does not. The knobs listed under a plan that "
               "does not fit are what each setting would bring the peak to.");
  }
  int run() override {
    const train::Config config = train::load_config(config_path_, sets_);
    const int64_t node_workers = config.dist.node_id >= 0 ? workers_ : workers_ / config.dist.nodes;
    constexpr int64_t kMostWorkers = int64_t{1} << 20;
    if (workers_ > kMostWorkers) fail("lofi plan: --workers ", workers_, " is more than ", kMostWorkers, " workers");
    if (local_workers_ > workers_)
      fail("lofi plan: --local-workers ", local_workers_, " is more than --workers ", workers_, " (the workers in all)");
    if (node_workers < 1 || workers_ % (config.dist.node_id >= 0 ? 1 : config.dist.nodes) != 0)
      fail("lofi plan: --workers ", workers_, " does not split into dist.nodes = ", config.dist.nodes, " equal nodes");
    train::check_node_batch(config.train, config.dist.nodes, node_workers);  // the layout train refuses is no plan
    // model.init opened as train first opens it (headers only): one that is no model is no plan.
    if (!config.model.init.empty()) {
      if (io::is_lora_adapter(config.model.init)) io::read_lora_adapter(config.model.init);
      else io::SafetensorsSet init(config.model.init);
    }
    const auto plan = family::memory_plan(config, node_workers, local_workers_ > 0 ? local_workers_ : workers_, 0);
    if (!plan) fail("lofi plan: model.arch = \"", config.model.arch, "\" has no memory model yet (language models have)");
    std::printf("%s", train::format_memory_plan(*plan).c_str());
    return plan->fits() ? 0 : 1;
  }

 private:
  std::string config_path_;
  std::vector<std::string> sets_;
  int64_t workers_ = 1, local_workers_ = 0;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(plan, lofi::cli::Plan)
