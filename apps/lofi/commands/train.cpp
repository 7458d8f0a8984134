// lofi train: one worker of a run (under `lofi launch`, torchrun or srun), then the end of its job.
#include <cstdio>
#include <iostream>

#include "../command.h"
#include "lofi/dist/env.h"
#include "lofi/family/family.h"
#include "lofi/io/temporaries.h"
#include "lofi/train/config.h"
#include "lofi/train/job_end.h"
#include "lofi/train/trainer.h"

namespace lofi::cli {
namespace {

class Train : public Command {
 public:
  std::string name() const override { return "train"; }
  std::string summary() const override { return "Train or fine-tune (one worker; run it under `lofi launch`, torchrun or srun)"; }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("--config,-c", config_path_, "TOML config file")->check(CLI::ExistingFile);
    cmd.add_option("--set", sets_, "override a config key: section.key=value (repeatable; the keys are listed below)");
    auto* resume = cmd.add_flag("--resume", resume_, "continue from the newest checkpoint that verifies in each node's ckpt/");
    auto* changed = cmd.add_flag("--resume-changed", resume_changed_,
                                 "resume although settings that change the trajectory differ from the checkpoint's");
    cmd.add_flag("--overwrite", overwrite_, "start over in a run directory that holds a run (deletes its checkpoints and finals)")
        ->excludes(resume)
        ->excludes(changed);
    cmd.add_flag("--print-config", print_config_, "print the resolved config, with each key's help, and exit");
    cmd.add_flag("--quiet", quiet_, "do not echo the resolved config (it is still written to the run directory)");
    cmd.footer("Config keys (TOML [section] key = value, or --set section.key=value), with their defaults:\n" +
               train::config_reference());
  }
  int run() override {
    train::StartOptions start;
    start.mode = resume_ || resume_changed_ ? run::StartMode::resume
                 : overwrite_               ? run::StartMode::overwrite
                                            : run::StartMode::fresh;
    start.allow_changed = resume_changed_;
    const train::Config config = train::load_config(config_path_, sets_);
    if (print_config_) {
      std::cout << train::to_toml(config, /*help=*/true);
      return 0;
    }
    io::stop_gracefully_on_signals();  // a first signal checkpoints and stops at the next read
    const dist::WorkerEnv env = dist::worker_env_from_environment();
    if (env.rank == 0 && !quiet_) std::cout << "# resolved config\n" << train::to_toml(config) << std::flush;
    train::TrainedWorker worker = train::run_training(config, env, family::make_task, start);
    train::finish_job(config, worker);  // the node's Hugging Face output, or a lo-fi job's merge
    if (env.rank == 0) std::printf("%s\n", done_line(worker.summary).c_str());
    return 0;
  }

 private:
  static std::string done_line(const train::TrainSummary& s) {
    if (s.steps_run == 0)  // resumed at its last step: no loss of this start to report
      return cat("done: node ", s.node, ", no steps left (its checkpoint is at step ", s.steps, " of ", s.steps, ")");
    char loss[32];
    std::snprintf(loss, sizeof(loss), "%.1f s, final loss %.4f", s.seconds, s.final_loss);
    return cat("done: node ", s.node, ", ", s.steps, " steps in ", loss, ", bytes sent ",
               s.bytes_within_node + s.bytes_between_nodes, " (between nodes ", s.bytes_between_nodes, ")");
  }

  std::string config_path_;
  std::vector<std::string> sets_;
  bool resume_ = false, resume_changed_ = false, overwrite_ = false, print_config_ = false, quiet_ = false;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(train, lofi::cli::Train)
