// lofi merge: the merge methods mergekit users know (methods/*.cpp), streamed tensor by tensor.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "../command.h"
#include "../options.h"
#include "lofi/error.h"
#include "lofi/merge/engine.h"
#include "lofi/merge/method.h"
#include "lofi/train/config.h"

namespace lofi::cli {
namespace {

class Merge : public Command {
 public:
  std::string name() const override { return "merge"; }
  std::string summary() const override {
    return "Merge checkpoints with a method mergekit users know: lofi merge --method ties A B ... --base PRETRAINED --out OUT";
  }
  void add_options(CLI::App& cmd) override {
    cmd_ = &cmd;
    add_merge_flags(cmd, options_, "merge");
    adapter_flags_.add_to(cmd);
    std::string method_help = "merge method:";
    for (const auto& name : merge::method_names()) method_help += "\n  " + name + ": " + merge::find_method(name).summary();
    cmd.add_option("--method", options_.method, method_help)->capture_default_str();
    cmd.add_option("--base", options_.base, "the model the inputs were fine-tuned from (task-arithmetic, ties, dare)");
    cmd.add_option("--weights", options_.weights, "weights w1,w2,... (average: normalised; others: as given, may be negative)")
        ->delimiter(',')->allow_extra_args(false)->check(kFinite);
    cmd.add_option("--lambda", options_.params.lambda, "task-arithmetic, ties, dare: scale of the merged difference")
        ->capture_default_str()->check(kFinite);
    cmd.add_option("--density", options_.params.density, "ties, dare: fraction of each difference kept, in (0, 1]")
        ->capture_default_str()->check(kFinite);
    cmd.add_option("--t", options_.params.t, "slerp: 0 gives the first input, 1 the second")->capture_default_str()->check(kFinite);
    cmd.add_option("--seed", options_.params.seed, "dare: seed of the drop masks")->capture_default_str()->check(kNonNegative);
  }
  int run() override {
    refuse_unused_flags();
    if (adapter_flags_.merge_if_adapters(options_)) return 0;
    options_.config_changes = [](const std::string& a, const std::string& a_source, const std::string& b,
                                  const std::string& b_source) { return train::trajectory_changes(a, a_source, b, b_source); };
    const merge::MergeResult r = merge::merge_checkpoints(options_);
    for (const auto& s : r.skipped) std::fprintf(stderr, "lofi: warning: left out %s\n", s.c_str());
    std::printf("merged %zu checkpoints (%s) into %s\n", r.used.size(), options_.method.c_str(), options_.out.c_str());
    return 0;
  }

 private:
  // A flag the method does not read is refused by name (it was ignored, and its value still went
  // into the output's provenance).
  void refuse_unused_flags() const {
    const merge::Method& method = merge::find_method(options_.method);
    const nlohmann::json used = method.describe(options_.params);
    std::string uses;
    for (const auto& [key, value] : used.items()) uses += (uses.empty() ? "" : ", ") + ("--" + key);
    for (const char* key : {"lambda", "density", "t", "seed"})
      if (cmd_->count(std::string("--") + key) > 0 && !used.contains(key))
        fail("--", key, ": --method ", options_.method, " does not use it (", uses.empty() ? "it takes none of --lambda, --density, --t, --seed" : "it uses " + uses,
             "); leave it out");
    if (cmd_->count("--weights") > 0 && !method.uses_weights())
      fail("--weights: --method ", options_.method, " does not use weights; leave them out");
  }

  CLI::App* cmd_ = nullptr;
  merge::MergeOptions options_;
  AdapterMergeFlags adapter_flags_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(merge, lofi::cli::Merge)
