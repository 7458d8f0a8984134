// lofi train: one worker of a run (under `lofi launch`, torchrun or srun), then the end of its job.
#include <iostream>

#include "../command.h"
#include "lofi/family/train_worker.h"
#include "lofi/train/config.h"

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
    family::train_worker(config, start, quiet_);
    return 0;
  }

 private:
  std::string config_path_;
  std::vector<std::string> sets_;
  bool resume_ = false, resume_changed_ = false, overwrite_ = false, print_config_ = false, quiet_ = false;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(train, lofi::cli::Train)
