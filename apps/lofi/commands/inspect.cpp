// lofi inspect: a checkpoint's tensors and metadata.
#include <iostream>

#include "../command.h"
#include "lofi/eval/inspect.h"

namespace lofi::cli {
namespace {

class Inspect : public Command {
 public:
  std::string name() const override { return "inspect"; }
  std::string summary() const override { return "List a checkpoint's tensors, shapes, dtypes and metadata"; }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("path", path_,
                   "a safetensors file, a sharded model's model.safetensors.index.json, or a Hugging Face model or PEFT "
                   "adapter directory")
        ->required()
        ->check(CLI::ExistingPath);
  }
  int run() override {
    std::cout << eval::describe_safetensors(path_);
    return 0;
  }

 private:
  std::string path_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(inspect, lofi::cli::Inspect)
