// lofi report: a self-contained HTML report of a run directory.
#include <cstdio>

#include "../command.h"
#include "lofi/eval/report.h"

namespace lofi::cli {
namespace {

class Report : public Command {
 public:
  std::string name() const override { return "report"; }
  std::string summary() const override { return "Write a self-contained HTML report of a run directory (or a directory of runs)"; }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("dir", dir_, "run directory, e.g. runs/demo")->required()->check(CLI::ExistingDirectory);
    cmd.add_option("--out,-o", out_, "output HTML (default: DIR/report.html)");
  }
  int run() override {
    std::printf("written: %s\n", eval::write_run_report(dir_, out_).c_str());
    return 0;
  }

 private:
  std::string dir_, out_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(report, lofi::cli::Report)
