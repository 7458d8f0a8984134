// lofi demo: the embedded default, baseline against lo-fi on a small language model and a small ViT.
#include "../command.h"
#include "../options.h"
#include "lofi/demo/demo.h"

namespace lofi::cli {
namespace {

class Demo : public Command {
 public:
  std::string name() const override { return "demo"; }
  std::string summary() const override {
    return "The embedded default: baseline vs lo-fi on a small language model and a small ViT, with shifts";
  }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("--out", options_.out, "output directory");
    cmd.add_option("--workers", options_.workers, "baseline workers = lo-fi nodes")->check(kPositive);
    cmd.add_option("--pretrain-steps", options_.pretrain_steps, "pretraining steps (cached)")->check(kPositive);
    cmd.add_option("--steps", options_.finetune_steps, "fine-tuning steps")->check(kPositive);
    cmd.add_option("--eval-windows", options_.eval_windows, "windows per evaluation set")->check(kPositive);
    cmd.add_flag("--fresh", options_.fresh, "regenerate data and retrain the pretrained models (the vision one took 90 minutes on 2 cores)");
    cmd.add_option("--only", options_.only, "run one half: language or vision")->check(CLI::IsMember({"language", "vision"}));
    cmd.add_option("--vision-pretrain-steps", options_.vision_pretrain_steps,
                   "vision pretraining steps (cached; the default's model is shipped in the binary, other counts train anew: "
                   "about 11 minutes per 1000 steps on 2 cores)")
        ->check(kPositive);
    cmd.add_option("--vision-steps", options_.vision_steps, "vision fine-tuning steps")->check(kPositive);
    cmd.add_option("--sync-every", options_.sync_every, "local SGD and DiLoCo average every N steps (0: leave them out)")->check(kNonNegative);
    cmd.add_option("--warm-start-steps", options_.warm_start_steps,
                   "the lo-fi arm with a shared warm start trains as one data-parallel node for its first N steps (at most "
                   "half the run; 0: leave it out)")
        ->check(kNonNegative);
  }
  int run() override { return demo::run_demo(options_); }

 private:
  demo::DemoOptions options_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(demo, lofi::cli::Demo)
