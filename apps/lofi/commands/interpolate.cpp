// lofi interpolate: held-out loss along the line between two checkpoints, and its barrier.
#include <iostream>

#include "../command.h"
#include "../options.h"
#include "lofi/family/sweeps.h"

namespace lofi::cli {
namespace {

class Interpolate : public Command {
 public:
  std::string name() const override { return "interpolate"; }
  std::string summary() const override { return "Loss along the line between two checkpoints, and the barrier height"; }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("from", from_, "checkpoint (or Hugging Face model directory) at alpha = 0")->required()->check(CLI::ExistingPath);
    cmd.add_option("to", to_, "checkpoint (or Hugging Face model directory) at alpha = 1")->required()->check(CLI::ExistingPath);
    cmd.add_option("--points", points_, "evenly spaced points including both ends")->check(CLI::Range(2, 1001));
    flags_.add_to(cmd);
  }
  int run() override {
    const family::LineReport line = family::interpolate(from_, to_, points_, flags_.request());
    std::cout << "from " << from_ << " (alpha 0) to " << to_ << " (alpha 1)\n" << line.table.text();
    for (const auto& b : line.barriers) std::cout << b << "\n";
    flags_.write_json(line.json.dump(2) + "\n");
    return 0;
  }

 private:
  std::string from_, to_;
  int points_ = 11;
  EvalFlags flags_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(interpolate, lofi::cli::Interpolate)
