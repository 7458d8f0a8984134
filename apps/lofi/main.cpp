// lofi: distributed fine-tuning without communication. main() only dispatches: every subcommand
// is a file under commands/ (its options and a call into the library), registered by the build;
// errors are printed on one line with a non-zero exit.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>
#include <string>

#include "command.h"
#include "lofi/dist/device.h"
#include "lofi/error.h"
#include "lofi/family/train_worker.h"
#include "lofi/io/temporaries.h"

namespace {

using namespace lofi;

// lofi's version, the engine's, and whether CUDA and NCCL are compiled in and usable here.
std::string version_text() {
  const dist::BuildInfo b = dist::build_info();
  auto yes_no = [](bool v) { return v ? "yes" : "no"; };
  std::string out = cat("lofi ", LOFI_VERSION, "\nLibTorch ", b.libtorch, "\nCUDA: compiled in ", yes_no(b.cuda_compiled));
  if (b.cuda_compiled) out += cat(" (runtime ", b.cuda_version, ")");
  out += cat(", available ", yes_no(b.cuda_available()), " (", b.gpus, " GPU(s) visible)");
  out += cat("\nNCCL: compiled in ", yes_no(b.nccl_compiled), ", available ", yes_no(b.cuda_available()));
  if (!b.nccl_version.empty()) out += cat(" (", b.nccl_version, ")");
  return out;
}

// Errors are one line, and a non-zero exit.
int report_error(const std::exception& e) {
  const std::string what = e.what();
  std::fprintf(stderr, "lofi: error: %s\n", what.substr(0, what.find('\n')).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Ctrl-C, SIGTERM or SIGHUP mid-write leave no OUT.tmp-PID behind (lofi launch forwards them to
  // its workers with its own handlers while it runs).
  io::remove_temporaries_on_signals();
  try {  // a worker the library launched (family/train_worker.h) runs its job, not the command line
    if (const std::optional<int> status = family::run_launched_worker()) return *status;
  } catch (const std::exception& e) {
    return report_error(e);
  }
  CLI::App app{"lofi: fine-tune across nodes without communicating gradients, then average the weights"};
  app.set_version_flag("--version", [] { return version_text(); });
  app.option_defaults()->always_capture_default();  // --help shows each option's default
  app.require_subcommand(1);

  cli::CommandRegistry commands("command");
  cli::register_all_commands(commands);
  std::vector<std::pair<CLI::App*, cli::Command*>> parsers;
  for (const auto& [name, command] : commands.entries()) {
    CLI::App* sub = app.add_subcommand(name, command->summary());
    command->add_options(*sub);
    parsers.emplace_back(sub, command.get());
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (const auto& [parser, command] : parsers)
      if (parser->parsed()) return command->run();
  } catch (const std::exception& e) {
    return report_error(e);
  }
  return 0;
}
