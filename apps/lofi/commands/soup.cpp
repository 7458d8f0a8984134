// lofi soup: a greedy soup of candidates by a held-out score.
#include <iostream>

#include "../command.h"
#include "../options.h"
#include "lofi/family/sweeps.h"

namespace lofi::cli {
namespace {

class Soup : public Command {
 public:
  std::string name() const override { return "soup"; }
  std::string summary() const override { return "Greedy soup: add candidates by held-out score while the average improves"; }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("candidates", candidates_, "checkpoints, or Hugging Face model directories")->required()->check(CLI::ExistingPath);
    cmd.add_option("--out,-o", out_, "write the soup here");
    cmd.add_flag("--allow-nonfinite", allow_nonfinite_, "consider candidates holding NaN or Inf (refused by default)");
    flags_.add_to(cmd);
  }
  int run() override {
    const family::SoupReport soup = family::greedy_soup(candidates_, flags_.request(), out_, allow_nonfinite_);
    std::cout << soup.steps.text() << "greedy soup of " << soup.chosen.size() << " of " << candidates_.size()
              << ": held-out loss " << eval::format_fixed(soup.loss, 4) << "\n";
    if (!out_.empty()) std::cout << "written: " << out_ << "\n";
    flags_.write_json(soup.json().dump(2) + "\n");
    return 0;
  }

 private:
  std::vector<std::string> candidates_;
  std::string out_;
  bool allow_nonfinite_ = false;
  EvalFlags flags_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(soup, lofi::cli::Soup)
