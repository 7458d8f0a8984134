// lofi export: a checkpoint as a Hugging Face model directory.
#include <cstdio>

#include "../command.h"
#include "../options.h"
#include "lofi/family/export.h"

namespace lofi::cli {
namespace {

class Export : public Command {
 public:
  std::string name() const override { return "export"; }
  std::string summary() const override {
    return "Write a checkpoint as a Hugging Face model directory: lofi export --format hf IN OUT_DIR";
  }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("--format", options_.format, "output format: hf (config.json + model.safetensors)")->required();
    cmd.add_option("in", in_, "lofi checkpoint (.safetensors with lofi.config metadata), run directory (its merged.safetensors), "
                              "PEFT adapter directory (folded into its base), or Hugging Face model directory (rewritten in "
                              "--dtype; gpt-oss's MXFP4 experts dequantized)")
        ->required()->check(CLI::ExistingPath);
    cmd.add_option("out", out_, "new output directory")->required();
    cmd.add_option("--dtype", options_.dtype, "F32 (default), F16 or BF16");
    cmd.add_option("--shard-size", options_.shard_bytes, "write shards of at most this many bytes + model.safetensors.index.json")
        ->check(kNonNegative);
    cmd.add_flag("--allow-nonfinite", options_.allow_nonfinite, "export weights holding NaN or Inf (refused by default)");
  }
  int run() override {
    for (const auto& f : family::export_checkpoint(in_, out_, options_)) std::printf("written: %s\n", f.c_str());
    return 0;
  }

 private:
  family::ExportOptions options_;
  std::string in_, out_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(export, lofi::cli::Export)
