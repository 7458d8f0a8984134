#include "lofi/demo/vision_demo.h"

#include <filesystem>
#include <tuple>

#include "lofi/demo/half.h"
#include "lofi/demo/runs.h"
#include "lofi/demo/shipped_vit.h"
#include "lofi/demo/synthetic_images.h"
#include "lofi/error.h"
#include "lofi/eval/classification.h"
#include "lofi/family/image_evaluator.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/run/run_dir.h"
#include "lofi/train/trainer.h"

namespace lofi::demo {
namespace {

namespace fs = std::filesystem;

const char* const kShifts[] = {"shift-rendition", "shift-sketch", "shift-corrupt", "shift-pose"};

// The demo ViT and DeiT's fine-tuning recipe, scaled to 32x32 images and a 2-core machine.
train::Config base_config(const std::string& images) {
  train::Config c;
  c.model.arch = "vit";
  c.model.preset = "vit_demo_patch4_32";
  c.model.drop_path = 0.1;
  c.images.scale_min = 0.5;      // small images lose their object under DeiT's 0.08
  c.images.color_jitter = 0.1;
  c.images.mixup = 0.0;          // mixing slows a short run more than it regularises it
  c.images.cutmix = 0.0;
  c.images.label_smoothing = 0.1;
  c.images.crop_pct = 1.0;       // the generated images are already framed
  c.images.interpolation = "bilinear";
  c.images.loader_threads = 1;
  c.train.batch_size = 64;
  c.train.log_every = 25;
  c.train.seed = 4321;
  c.train.weight_decay = 0.05;
  c.train.beta2 = 0.999;
  c.dist.timeout_s = 600;
  c.data.train = images + "/finetune-train";
  return c;
}

// The vision half: a ViT pretrained on a source task (shipped, or trained anew), fine-tuned with a
// new head on a target task, scored in-distribution and under four shifts.
class VisionHalf : public DemoHalf {
 public:
  explicit VisionHalf(const VisionDemoOptions& opt) : opt_(opt), out_(opt.out), images_(opt.out + "/images") {}

  HalfMetric metric() const override {
    return {"vision", "top-1 %", "avg shift top-1 %", true, "in-dist top-1 %", "avg shifts top-1 %", 1};
  }

  train::Config prepare() override {
    io::make_dirs(out_);
    demo::SyntheticImageConfig gen;
    if (opt_.fresh && fs::exists(images_)) fs::remove_all(images_);
    auto tree = demo::write_synthetic_images(gen, images_);
    std::printf("vision: %lld generated images in %s%s\n", static_cast<long long>(tree.images), images_.c_str(),
                tree.generated ? "" : " (cached)");
    pretrain();
    ft_ = base_config(images_);
    ft_.model.init = pretrained();
    ft_.train.steps = opt_.finetune_steps;
    ft_.train.lr = 4e-4;
    ft_.train.min_lr = 1e-5;
    ft_.train.warmup_steps = std::min<int64_t>(10, opt_.finetune_steps / 5);
    ft_.train.batch_size = 16 * opt_.workers;
    ft_.data.val = images_ + "/finetune-val";  // for each lo-fi job's averaging check
    sets_ = {{"in-dist", images_ + "/finetune-val", ""}};
    for (const char* s : kShifts) {
      const std::string name = std::string(s).substr(6);  // "shift-sketch" -> "sketch"
      sets_.push_back({name, images_ + "/" + s, ""});
      shift_names_.push_back(name);
    }
    settings_.threads = 2;
    return ft_;
  }

  // LP-FT: lo-fi again, its new head first fitted on frozen features (the same on every node).
  std::vector<DemoModel> own_arms(const train::Config& ft) override {
    train::Config lpft = ft;
    lpft.run.dir = out_ + "/lofi-lpft";
    lpft.dist.nodes = opt_.workers;
    lpft.train.head_init = "lp";
    std::printf("vision lo-fi with LP-FT: a %lld-step linear probe of the new head, then %d nodes as above\n",
                static_cast<long long>(lpft.train.lp_steps), opt_.workers);
    const double seconds = launch_training(lpft, out_, "lofi-lpft", opt_.workers);
    return {DemoModel("lo-fi average, LP-FT head (train.head_init = lp)", {run::RunDir(lpft.run.dir).merged()})
                .cost(seconds, run::run_traffic(run::RunDir(lpft.run.dir)))};
  }

  std::vector<std::string> score_columns() const override {
    std::vector<std::string> columns = eval::classification_columns(shift_names_);
    return {columns.begin() + 1, columns.end()};  // less "model"
  }

  ModelScore score(const DemoModel& m) override {
    if (!evaluator_) {
      const std::string& reference = m.paths[0];
      evaluator_ = std::make_unique<family::ImageEvaluator>(train::config_from_checkpoint(reference),
                                                            family::checkpoint_classes(reference), sets_, settings_);
    }
    const auto scores = m.paths.size() == 1 ? evaluator_->score_file(m.paths[0]) : evaluator_->score_ensemble(m.paths);
    eval::ClassificationRow row;
    row.model = m.name;
    row.in_distribution = scores[0];
    for (size_t i = 1; i < scores.size(); ++i) row.shifts.emplace_back(shift_names_[i - 1], scores[i]);
    ModelScore out;
    std::tie(out.cells, out.record) = eval::classification_cells(row);
    out.cells.erase(out.cells.begin());  // the model's name: the skeleton writes it
    out.in_distribution = 100 * row.in_distribution.top1;  // as the table shows it, in percent
    out.shift = 100 * row.shift_average_top1();
    return out;
  }

  std::string title() const override {
    return "Vision: fine-tuning a ViT on generated images, " + std::to_string(opt_.workers) + " workers";
  }
  std::string note() const override {
    return "Top-1 accuracy (%, higher is better) in-distribution and under four shifts (renditions, sketches, corruptions, "
           "poses); the shift average is their unweighted mean, as the paper reports it. The baseline all-reduces gradients "
           "every step; lo-fi nodes never communicate and are averaged once.";
  }
  std::string caption() const override { return "vision (top-1 accuracy %, higher is better)"; }

  // How strong the start is: the pretrained model on held-out images of its own source task.
  void add_findings(const std::vector<DemoModel>&, DemoSection& section) override {
    const double source_top1 = family::ImageEvaluator(train::config_from_checkpoint(pretrained()),
                                                      family::checkpoint_classes(pretrained()),
                                                      {{"source", images_ + "/pretrain-val", ""}}, settings_)
                                   .score_file(pretrained())[0]
                                   .top1;
    const std::string source_text = "the pretrained model on held-out images of its source task: top-1 " +
                                     eval::format_fixed(100 * source_top1, 1) + "%\n";
    section.table += source_text;
    section.markdown += source_text;
    section.results.more["model"] = ft_.model.preset;
    section.results.more["shifts"] = shift_names_;
    section.results.more["pretrained_source"] = {{"metric", "top-1 %"}, {"set", "pretrain-val (held-out source images)"},
                                         {"value", 100 * source_top1}};
  }

 private:
  std::string pretrained() const { return out_ + "/pretrained.safetensors"; }

  // The pretrained model: the cached one, else the shipped one, else pretrain on the source task.
  void pretrain() {
    // The cache holds only what these options would train.
    auto trained_as_asked = [&] {
      const io::Metadata meta = io::SafetensorsFile(pretrained()).metadata();
      return meta.count("lofi.step") && meta.at("lofi.step") == std::to_string(opt_.pretrain_steps);
    };
    bool cached = !opt_.fresh && fs::exists(pretrained()) && trained_as_asked();
    if (!cached && !opt_.fresh) {
      // The shipped model is this recipe at its default steps; other steps train anew.
      write_shipped_vision_pretrained(pretrained());
      cached = trained_as_asked();
      if (cached)
        std::printf("vision: the shipped pretrained ViT (%lld steps on the source task, made by "
                    "assets/demo/vit_demo_shapes.sh; --fresh retrains it)\n",
                    static_cast<long long>(opt_.pretrain_steps));
      else
        fs::remove(pretrained());
    }
    if (cached) return;
    train::Config c = base_config(images_);
    c.run.dir = out_ + "/pretrain";
    c.data.train = images_ + "/pretrain-train";
    c.data.val = images_ + "/pretrain-val";
    c.train.steps = opt_.pretrain_steps;
    c.train.batch_size = 128;
    c.train.lr = 2e-3;
    c.train.min_lr = 1e-5;
    c.train.log_every = 100;
    c.train.eval_every = 1000;
    c.train.eval_batches = 7;  // all 800 held-out source images
    // A ViT learns a source task from scratch slowly: lighter augmentation than fine-tuning.
    c.model.drop_path = 0.0;
    c.images.scale_min = 0.6;
    c.images.color_jitter = 0.0;
    c.images.label_smoothing = 0.0;
    c.train.warmup_steps = std::min<int64_t>(200, opt_.pretrain_steps / 5);
    std::printf("vision: pretraining a ViT %lld steps on the source task (cached in %s)\n",
                static_cast<long long>(c.train.steps), pretrained().c_str());
    launch_training(c, out_, "pretrain", 1);
    fs::copy_file(run::RunDir(c.run.dir).node(0).final_weights(), pretrained(), fs::copy_options::overwrite_existing);
  }

  const VisionDemoOptions& opt_;
  const std::string out_, images_;
  train::Config ft_;
  std::vector<family::ImageTestSet> sets_;
  std::vector<std::string> shift_names_;
  family::ImageEvalSettings settings_;
  std::unique_ptr<family::ImageEvaluator> evaluator_;
};

}  // namespace

DemoSection run_vision_demo(const VisionDemoOptions& opt) {
  VisionHalf half(opt);
  DemoSection result = run_half(half, {opt.out, "vision ", opt.workers, opt.sync_every, opt.warm_start_steps});
  io::write_file_atomic(opt.out + "/results.json", result.results.to_json().dump(2) + "\n");
  return result;
}

}  // namespace lofi::demo
