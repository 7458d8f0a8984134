// lofi average: the uniform (or weighted) average of checkpoints or of a run's node finals.
#include <cstdio>

#include "../command.h"
#include "../options.h"
#include "lofi/merge/average.h"
#include "lofi/train/config.h"

namespace lofi::cli {
namespace {

class Average : public Command {
 public:
  std::string name() const override { return "average"; }
  std::string summary() const override {
    return "Average checkpoints or run directories: lofi average A B ... --out OUT (lofi merge --method average)";
  }
  void add_options(CLI::App& cmd) override {
    add_merge_flags(cmd, options_, "average");
    adapter_flags_.add_to(cmd);
    cmd.add_option("--weights", options_.weights, "weights w1,w2,... (normalised)")->delimiter(',')->allow_extra_args(false)->check(kFinite);
  }
  int run() override {
    if (adapter_flags_.merge_if_adapters(options_)) return 0;
    options_.config_changes = [](const std::string& a, const std::string& a_source, const std::string& b,
                                  const std::string& b_source) { return train::trajectory_changes(a, a_source, b, b_source); };
    const merge::AverageResult r = merge::average_checkpoints(options_);
    for (const auto& s : r.skipped) std::fprintf(stderr, "lofi: warning: left out %s\n", s.c_str());
    std::printf("averaged %zu checkpoints into %s\n", r.used.size(), options_.out.c_str());
    return 0;
  }

 private:
  merge::AverageOptions options_;
  AdapterMergeFlags adapter_flags_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(average, lofi::cli::Average)
