// lofi launch: K local workers with torchrun's environment.
#include "../command.h"
#include "../options.h"
#include "lofi/dist/launcher.h"

namespace lofi::cli {
namespace {

class Launch : public Command {
 public:
  std::string name() const override { return "launch"; }
  std::string summary() const override {
    return "Run K local workers with torchrun's environment: lofi launch --workers K -- train ...";
  }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("--workers,-k", options_.workers, "number of worker processes")->check(kPositive);
    cmd.add_option("--threads", options_.threads, "intra-op threads per worker (default: cores / workers)")->check(kPositive);
    cmd.add_option("--master-port", options_.master_port, "rendezvous port on 127.0.0.1 (default: a free one)")
        ->check(CLI::Range(0, 65535));
    cmd.add_option("command", options_.args, "lofi subcommand and its arguments, after --")->required();
  }
  int run() override { return dist::launch_workers(options_); }

 private:
  dist::LaunchOptions options_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(launch, lofi::cli::Launch)
