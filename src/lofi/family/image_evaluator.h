// Evaluates image-classifier weights on named test folders, each optionally seen through a class
// map (ImageNet-R/-A style subsets, ObjectNet style many-to-one): the scorer behind `eval`,
// `soup` and `interpolate` for vision models. Small test sets are decoded once and kept as
// tensors (the evaluation transform is deterministic), so sweeping many weight sets re-reads
// nothing; large ones stream through the threaded loader each time.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lofi/data/augment.h"
#include "lofi/data/image_folder.h"
#include "lofi/eval/class_map.h"
#include "lofi/eval/classification.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/vit.h"
#include "lofi/train/config.h"

namespace lofi::family {

struct ImageTestSet {
  std::string name;       // e.g. "sketch"
  std::string folder;     // ImageFolder root
  std::string class_map;  // optional class-map file (class_map.h); empty: the model's classes
};

struct ImageEvalSettings {
  int64_t batch = 64;                 // images per forward pass
  int64_t max_images = 0;             // per set; 0: all
  int64_t threads = 2;                // decoding threads
  int64_t cache_bytes = 1LL << 29;    // keep decoded sets up to this size in memory
  bool allow_nonfinite = false;       // score weights holding NaN or Inf (else refused, naming the tensor)
};

class ImageEvaluator {
 public:
  // CONFIG gives the model (train::config_from_checkpoint); CLASSES are the model's class names
  // (its checkpoint's "lofi.classes"), which test folders map onto by name.
  ImageEvaluator(const train::Config& config, std::vector<std::string> classes, const std::vector<ImageTestSet>& sets,
                 const ImageEvalSettings& settings);
  ~ImageEvaluator();

  const std::vector<ImageTestSet>& sets() const { return sets_; }
  std::vector<eval::ClassificationScore> score(const io::NamedTensors& weights);
  std::vector<eval::ClassificationScore> score_file(const std::string& checkpoint);
  // The ensemble predicts the mean of its members' probabilities.
  std::vector<eval::ClassificationScore> score_ensemble(const std::vector<std::string>& checkpoints);
  // {"loss/NAME": loss, "top1/NAME": accuracy} for merge::Evaluator.
  std::map<std::string, double> losses(const io::NamedTensors& weights);

 private:
  struct Set;
  // Log-probabilities (B, model classes) of a batch of images.
  using Predict = std::function<torch::Tensor(const torch::Tensor&)>;
  std::vector<eval::ClassificationScore> run(const Predict& predict);
  // Calls F(images (B, 3, S, S), labels (B)) for SET's batches, max_images images at most.
  template <typename F>
  void for_each_batch(const Set& set, const F& f) const;

  train::Config config_;
  std::vector<std::string> classes_;
  std::vector<ImageTestSet> sets_;
  ImageEvalSettings settings_;
  torch::Device device_;  // config.train.device, for the model and each batch
  data::AugmentConfig augment_;
  std::vector<std::unique_ptr<Set>> data_;
  model::Vit vit_{nullptr};
};

// The class names stored with a classifier's weights ("lofi.classes"); throws naming PATH.
std::vector<std::string> checkpoint_classes(const std::string& path);

}  // namespace lofi::family
