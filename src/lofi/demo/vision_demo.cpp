#include "lofi/demo/vision_demo.h"

#include <filesystem>

#include "lofi/demo/claims.h"
#include "lofi/demo/runs.h"
#include "lofi/demo/shipped_vit.h"
#include "lofi/demo/synthetic_images.h"
#include "lofi/error.h"
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

}  // namespace

DemoSection run_vision_demo(const VisionDemoOptions& opt) {
  const std::string out = opt.out, images = out + "/images";
  const int K = opt.workers;
  io::make_dirs(out);
  demo::SyntheticImageConfig gen;
  if (opt.fresh && fs::exists(images)) fs::remove_all(images);
  auto tree = demo::write_synthetic_images(gen, images);
  std::printf("vision: %lld generated images in %s%s\n", static_cast<long long>(tree.images), images.c_str(),
              tree.generated ? "" : " (cached)");

  // 1. The pretrained model: the cached one, else the shipped one, else pretrain on the source task.
  const std::string pretrained = out + "/pretrained.safetensors";
  // The cache holds only what these options would train.
  auto trained_as_asked = [&] {
    const io::Metadata meta = io::SafetensorsFile(pretrained).metadata();
    return meta.count("lofi.step") && meta.at("lofi.step") == std::to_string(opt.pretrain_steps);
  };
  bool cached = !opt.fresh && fs::exists(pretrained) && trained_as_asked();
  if (!cached && !opt.fresh) {
    // The shipped model is this recipe at its default steps; other steps train anew.
    write_shipped_vision_pretrained(pretrained);
    cached = trained_as_asked();
    if (cached)
      std::printf("vision: the shipped pretrained ViT (%lld steps on the source task, made by "
                  "assets/demo/vit_demo_shapes.sh; --fresh retrains it)\n",
                  static_cast<long long>(opt.pretrain_steps));
    else
      fs::remove(pretrained);
  }
  if (!cached) {
    train::Config c = base_config(images);
    c.run.dir = out + "/pretrain";
    c.data.train = images + "/pretrain-train";
    c.data.val = images + "/pretrain-val";
    c.train.steps = opt.pretrain_steps;
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
    c.train.warmup_steps = std::min<int64_t>(200, opt.pretrain_steps / 5);
    std::printf("vision: pretraining a ViT %lld steps on the source task (cached in %s)\n",
                static_cast<long long>(c.train.steps), pretrained.c_str());
    launch_training(c, out, "pretrain", 1);
    fs::copy_file(run::RunDir(c.run.dir).node(0).final_weights(), pretrained, fs::copy_options::overwrite_existing);
  }

  // 2. Fine-tune on the target task: a new head, the baseline then lo-fi, one data budget.
  train::Config ft = base_config(images);
  ft.model.init = pretrained;
  ft.train.steps = opt.finetune_steps;
  ft.train.lr = 4e-4;
  ft.train.min_lr = 1e-5;
  ft.train.warmup_steps = std::min<int64_t>(10, opt.finetune_steps / 5);
  ft.train.batch_size = 16 * K;
  ft.data.val = images + "/finetune-val";  // for each lo-fi job's averaging check

  const Comparison runs = run_baseline_and_lofi(ft, out, K, "vision ");
  const std::vector<SyncedArm> arms =
      opt.sync_every > 0 ? run_synced_arms(ft, out, K, "vision ", opt.sync_every) : std::vector<SyncedArm>{};
  // LP-FT: lo-fi again, its new head first fitted on frozen features (the same on every node).
  train::Config lpft = ft;
  lpft.run.dir = out + "/lofi-lpft";
  lpft.dist.nodes = K;
  lpft.train.head_init = "lp";
  std::printf("vision lo-fi with LP-FT: a %lld-step linear probe of the new head, then %d nodes as above\n",
              static_cast<long long>(lpft.train.lp_steps), K);
  const double lpft_seconds = launch_training(lpft, out, "lofi-lpft", K);
  const Traffic lpft_traffic = run_traffic(lpft.run.dir);

  // 3. Score every model in-distribution and under each shift.
  std::vector<family::ImageTestSet> sets{{"in-dist", images + "/finetune-val", ""}};
  std::vector<std::string> shift_names;
  for (const char* s : kShifts) {
    std::string name = std::string(s).substr(6);  // "shift-sketch" -> "sketch"
    sets.push_back({name, images + "/" + s, ""});
    shift_names.push_back(name);
  }
  const std::string& baseline_final = runs.baseline_final;
  family::ImageEvalSettings settings;
  settings.threads = 2;
  family::ImageEvaluator evaluator(train::config_from_checkpoint(baseline_final), family::checkpoint_classes(baseline_final),
                                 sets, settings);
  const std::vector<std::string>& node_finals = runs.node_finals;

  struct Model {
    std::string name;
    std::vector<std::string> paths;  // one checkpoint, or an ensemble's members
    double seconds = -1;
    const Traffic* traffic = nullptr;
  };
  std::vector<Model> models{{"baseline (data-parallel)", {baseline_final}, runs.baseline_seconds, &runs.baseline_traffic}};
  for (int k = 0; k < K; ++k) models.push_back({"lo-fi node " + std::to_string(k), {node_finals[static_cast<size_t>(k)]}});
  models.push_back({"lo-fi average", {runs.lofi_average}, runs.lofi_seconds, &runs.lofi_traffic});
  models.push_back({"lo-fi ensemble (not a single model)", node_finals});
  for (const auto& arm : arms)
    models.push_back({arm.method + " (averaged every " + std::to_string(arm.sync_every) + " steps)", {arm.model}, arm.seconds,
                      &arm.traffic});
  models.push_back({"lo-fi average, LP-FT head (train.head_init = lp)", {run::RunDir(lpft.run.dir).merged()}, lpft_seconds,
                    &lpft_traffic});

  eval::ResultsTable table(eval::classification_columns(shift_names, {"bytes sent", "bytes between nodes", "wall time"}));
  for (const auto& m : models) {
    auto scores = m.paths.size() == 1 ? evaluator.score_file(m.paths[0]) : evaluator.score_ensemble(m.paths);
    eval::ClassificationRow row;
    row.model = m.name;
    row.in_distribution = scores[0];
    for (size_t i = 1; i < scores.size(); ++i) row.shifts.emplace_back(shift_names[i - 1], scores[i]);
    nlohmann::json extra = nlohmann::json::object();
    if (m.seconds >= 0) extra["wall_seconds"] = m.seconds;
    if (m.traffic) extra["bytes_sent"] = m.traffic->total, extra["bytes_between_nodes"] = m.traffic->between_nodes;
    eval::add_classification_row(table, row,
                                 {m.traffic ? eval::format_bytes(m.traffic->total) : "",
                                  m.traffic ? eval::format_bytes(m.traffic->between_nodes) : "",
                                  m.seconds >= 0 ? eval::format_fixed(m.seconds, 1) + " s" : ""},
                                 extra);
  }

  // How strong the start is: the pretrained model on held-out images of its own source task.
  const double source_top1 = family::ImageEvaluator(train::config_from_checkpoint(pretrained), family::checkpoint_classes(pretrained),
                                                  {{"source", images + "/pretrain-val", ""}}, settings)
                                 .score_file(pretrained)[0]
                                 .top1;
  const nlohmann::json pretrained_source{{"metric", "top-1 %"}, {"set", "pretrain-val (held-out source images)"},
                                         {"value", 100 * source_top1}};

  // What the paper claims, checked against these numbers (top-1 in percent, as the table shows it).
  const nlohmann::json rows = table.json();
  HalfScores scores;
  scores.half = "vision", scores.metric = "top-1 %", scores.shift_metric = "avg shift top-1 %", scores.higher_is_better = true;
  const size_t average_row = static_cast<size_t>(K) + 1;
  scores.baseline_in = 100 * rows[0]["in_distribution"]["top1"].get<double>();
  scores.lofi_in = 100 * rows[average_row]["in_distribution"]["top1"].get<double>();
  scores.baseline_shift = 100 * rows[0]["shift_average_top1"].get<double>();
  scores.lofi_shift = 100 * rows[average_row]["shift_average_top1"].get<double>();
  for (int k = 0; k < K; ++k) scores.nodes_in.push_back(100 * rows[static_cast<size_t>(k) + 1]["in_distribution"]["top1"].get<double>());
  scores.baseline_bytes_sent = runs.baseline_traffic.total, scores.lofi_bytes_between_nodes = runs.lofi_traffic.between_nodes;

  // The spectrum: what each way of training scored and what it sent between machines.
  auto top1 = [&](size_t row) { return 100 * rows[row]["in_distribution"]["top1"].get<double>(); };
  auto shift = [&](size_t row) { return 100 * rows[row]["shift_average_top1"].get<double>(); };
  std::vector<SpectrumRow> spectrum{{"baseline (data-parallel)", "every step", top1(0), shift(0),
                                     runs.baseline_traffic.total / K, runs.baseline_seconds}};
  for (size_t a = 0; a < arms.size(); ++a) {
    const size_t row = static_cast<size_t>(K) + 3 + a;
    spectrum.push_back({arms[a].method, "every " + std::to_string(arms[a].sync_every) + " steps", top1(row), shift(row),
                        arms[a].traffic.between_nodes / K, arms[a].seconds});
  }
  spectrum.push_back({"lo-fi (average)", "never", top1(average_row), shift(average_row), runs.lofi_traffic.between_nodes / K,
                      runs.lofi_seconds});
  const eval::ResultsTable spectrum_table = demo::spectrum_table(spectrum, "in-dist top-1 %", "avg shifts top-1 %", 1);

  DemoSection result;
  result.title = "Vision: fine-tuning a ViT on generated images, " + std::to_string(K) + " workers";
  const std::string note =
      "Top-1 accuracy (%, higher is better) in-distribution and under four shifts (renditions, sketches, corruptions, "
      "poses); the shift average is their unweighted mean, as the paper reports it. The baseline all-reduces gradients "
      "every step; lo-fi nodes never communicate and are averaged once.";
  const std::string source_text = "the pretrained model on held-out images of its source task: top-1 " +
                                  eval::format_fixed(100 * source_top1, 1) + "%\n";
  result.table = "vision (top-1 accuracy %, higher is better)\n" + table.text() + source_text +
                 "\nvision: the communication spectrum (wall time projected across machines)\n" + spectrum_table.text();
  const std::string spectrum_note = kSpectrumNote;
  result.markdown = "## " + result.title + "\n\n" + note + "\n\n" + table.markdown() + "\n" + source_text + "\n" +
                    spectrum_note + "\n\n" + spectrum_table.markdown();
  result.json = {{"title", result.title}, {"note", note}, {"workers", K}, {"finetune_steps", ft.train.steps},
                 {"global_batch", ft.train.batch_size}, {"model", ft.model.preset}, {"shifts", shift_names},
                 {"rows", rows}, {"table", table.display()}, {"claims", make_claims(scores)},
                 {"spectrum", spectrum_table.json()}, {"spectrum_table", spectrum_table.display()},
                 {"spectrum_note", spectrum_note}, {"pretrained_source", pretrained_source}};
  io::write_file_atomic(out + "/results.json", result.json.dump(2) + "\n");
  return result;
}

}  // namespace lofi::demo
