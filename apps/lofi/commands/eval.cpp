// lofi eval: a model's (or an ensemble's) scores on named datasets, as its model family shows them.
#include <iostream>

#include "../command.h"
#include "../options.h"
#include "lofi/family/sweeps.h"

namespace lofi::cli {
namespace {

class Eval : public Command {
 public:
  std::string name() const override { return "eval"; }
  std::string summary() const override {
    return "Loss and perplexity (language models) or top-1/top-5 (classifiers) on named datasets, of a model or an "
           "ensemble beside its average";
  }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("--model,-m", flags_.model, "safetensors checkpoint, or a Hugging Face model directory (the pretrained model)")
        ->check(CLI::ExistingPath);
    cmd.add_option("--ensemble", flags_.ensemble,
                   "checkpoints or Hugging Face model directories to ensemble (mean of probabilities), shown beside their weight average")
        ->check(CLI::ExistingPath);
    flags_.add_to(cmd);
    cmd.add_flag("--allow-nonfinite", flags_.settings.allow_nonfinite, "score weights holding NaN or Inf (refused by default)");
  }
  int run() override {
    const eval::ResultsTable table = family::eval_table(flags_.request());
    std::cout << table.text();
    flags_.write_json(nlohmann::json{{"results", table.json()}}.dump(2) + "\n");
    return 0;
  }

 private:
  EvalFlags flags_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(eval, lofi::cli::Eval)
