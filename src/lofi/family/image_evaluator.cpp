#include "lofi/family/image_evaluator.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "lofi/data/image_loader.h"
#include "lofi/dist/device.h"
#include "lofi/error.h"
#include "lofi/eval/progress.h"
#include "lofi/family/image_task.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/merge/nonfinite.h"
#include "lofi/model/weights.h"

namespace lofi::family {

namespace {

void refuse_nonfinite_vit(const torch::nn::Module& vit, const std::string& source, const ImageEvalSettings& settings) {
  if (settings.allow_nonfinite) return;
  merge::refuse_nonfinite_weights(model::module_weights(vit), source,
                                  "the weights of a diverged run; leave it out, or pass --allow-nonfinite to use it anyway");
}

}  // namespace

struct ImageEvaluator::Set {
  data::ImageFolder folder;
  bool mapped = false;
  eval::ClassMap map;
  bool cached = false;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> batches;  // when cached: (images (B, 3, S, S), labels (B))
};

std::vector<std::string> checkpoint_classes(const std::string& path) {
  io::SafetensorsFile file(path);
  auto it = file.metadata().find("lofi.classes");
  if (it == file.metadata().end()) fail(path, ": no lofi.classes in its metadata (not a lofi image classifier?)");
  auto names = nlohmann::json::parse(it->second, nullptr, false);
  if (!names.is_array() || names.empty()) fail(path, ": lofi.classes is not a non-empty JSON list of names");
  return names.get<std::vector<std::string>>();
}

ImageEvaluator::ImageEvaluator(const train::Config& config, std::vector<std::string> classes,
                               const std::vector<ImageTestSet>& sets, const ImageEvalSettings& settings)
    : config_(config),
      classes_(std::move(classes)),
      sets_(sets),
      settings_(settings),
      device_(dist::resolve_device(config.train.device, 0, "train.device")) {
  dist::check_precision(config.train.precision, device_, "train.precision");
  if (sets.empty()) fail("no evaluation data given (--data NAME=FOLDER)");
  train::ModelConfig shape = config.model;
  shape.init.clear();
  vit_ = make_vit(shape, static_cast<int64_t>(classes_.size()), 0);
  vit_->to(device_);
  augment_ = augment_config(config, vit_->config.image_size);
  const int64_t image_bytes = 3 * augment_.image_size * augment_.image_size * static_cast<int64_t>(sizeof(float));
  for (const auto& s : sets) {
    eval::ClassMap map;
    const bool mapped = !s.class_map.empty();
    if (mapped) map = eval::read_class_map(s.class_map, static_cast<int64_t>(classes_.size()), classes_);
    data::ImageFolder folder(s.folder, mapped ? map.names : classes_);
    data_.push_back(std::make_unique<Set>(Set{std::move(folder), mapped, std::move(map), false, {}}));
    Set& set = *data_.back();
    const int64_t images = settings_.max_images > 0 ? std::min(settings_.max_images, set.folder.size()) : set.folder.size();
    set.cached = images * image_bytes <= settings_.cache_bytes;  // decode once, score many times
    if (set.cached)
      for_each_batch(set, [&](const torch::Tensor& x, const torch::Tensor& y) { set.batches.emplace_back(x, y); });
  }
}

template <typename F>
void ImageEvaluator::for_each_batch(const Set& set, const F& f) const {
  data::LoaderConfig lc;
  lc.threads = settings_.threads;
  lc.on_bad_image = config_.images.on_bad_image;
  // --max-images: a share of every class, not the first classes' files.
  const std::vector<int64_t> subset = settings_.max_images > 0 && settings_.max_images < set.folder.size()
                                          ? data::balanced_subset(set.folder, settings_.max_images)
                                          : std::vector<int64_t>{};
  auto loader = data::make_eval_loader(set.folder, augment_, lc, settings_.batch, subset);
  while (auto b = loader->next()) f(b->images, b->labels);
}

ImageEvaluator::~ImageEvaluator() = default;

std::vector<eval::ClassificationScore> ImageEvaluator::run(const Predict& predict) {
  torch::NoGradGuard no_grad;
  dist::PrecisionGuard precision(device_, config_.train.precision);
  std::vector<eval::ClassificationScore> out;
  for (const auto& set : data_) {
    eval::ClassificationMeter meter = set->mapped ? eval::ClassificationMeter(set->map) : eval::ClassificationMeter();
    const int64_t total = settings_.max_images > 0 ? std::min(settings_.max_images, set->folder.size()) : set->folder.size();
    eval::Progress progress("scoring " + set->folder.root(), total, "images");
    int64_t seen = 0;
    auto add = [&](const torch::Tensor& x, const torch::Tensor& y) {
      meter.add(predict(dist::to_device(x, device_)), y);
      progress.update(seen += y.size(0));
    };
    if (set->cached) {
      for (const auto& [images, labels] : set->batches) add(images, labels);
    } else {
      for_each_batch(*set, add);
    }
    // Every image unreadable (skipped): a loss of 0 over none would rank best of all.
    if (seen == 0)
      fail(set->folder.root(), ": no readable image among its ", set->folder.size(), " files (each was skipped as unreadable); ",
           "fix or remove them");
    out.push_back(meter.score());
  }
  return out;
}

std::vector<eval::ClassificationScore> ImageEvaluator::score(const io::NamedTensors& weights) {
  model::load_named_tensors(*vit_, weights, "weights");
  vit_->eval();
  return run([&](const torch::Tensor& x) { return torch::log_softmax(vit_->forward(x), -1); });
}

std::vector<eval::ClassificationScore> ImageEvaluator::score_file(const std::string& checkpoint) {
  if (io::is_lora_adapter(checkpoint)) return score_ensemble({checkpoint});  // its own model: base + adapter
  model::load_module_weights(*vit_, io::SafetensorsFile(checkpoint));
  refuse_nonfinite_vit(*vit_, checkpoint, settings_);
  vit_->eval();
  return run([&](const torch::Tensor& x) { return torch::log_softmax(vit_->forward(x), -1); });
}

std::vector<eval::ClassificationScore> ImageEvaluator::score_ensemble(const std::vector<std::string>& checkpoints) {
  std::vector<model::Vit> members;
  for (const auto& path : checkpoints) {
    train::ModelConfig shape = config_.model;
    const bool adapter = io::is_lora_adapter(path);  // built on its base by make_vit
    shape.init = adapter ? path : "";
    members.push_back(make_vit(shape, static_cast<int64_t>(classes_.size()), 0));
    members.back()->to(device_);
    if (!adapter) model::load_module_weights(*members.back(), io::SafetensorsFile(path));
    refuse_nonfinite_vit(*members.back(), path, settings_);
    members.back()->eval();
  }
  return run([&](const torch::Tensor& x) {
    torch::Tensor probs = torch::zeros({x.size(0), static_cast<int64_t>(classes_.size())}, x.options());  // (B, classes)
    for (auto& m : members) probs += torch::softmax(m->forward(x), -1);
    return torch::log(probs / static_cast<double>(members.size()));
  });
}

std::map<std::string, double> ImageEvaluator::losses(const io::NamedTensors& weights) {
  std::map<std::string, double> out;
  auto scores = score(weights);
  for (size_t i = 0; i < scores.size(); ++i) {
    out["loss/" + sets_[i].name] = scores[i].loss;
    out["top1/" + sets_[i].name] = scores[i].top1;
  }
  return out;
}

}  // namespace lofi::family
