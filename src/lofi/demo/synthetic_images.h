// The vision demo's data, generated deterministically (no downloads): small RGB images of
// procedurally drawn shapes on cluttered, textured backgrounds, in the spirit of ImageNet and its
// shifts. A pretraining task (16 classes), a different fine-tuning task (10 classes), and shifted
// test sets of the fine-tuning task: renditions (patterned fills, odd palettes), sketches (outline
// only, black on white), corruptions (noise, blur, contrast, fog, blockiness) and poses (tiny,
// squashed or cropped objects). Every image is a pure function of (seed, split, index).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lofi::demo {

struct SyntheticImageConfig {
  uint64_t seed = 1;                       // every image derives from (seed, split, index)
  int64_t image_size = 32;                 // square images, pixels per side, e.g. 32
  int64_t pretrain_train_per_class = 2000; // pretrain-train: 16 classes x 2000 = 32000 images
  int64_t pretrain_val_per_class = 50;     // pretrain-val
  int64_t finetune_train_per_class = 200;  // finetune-train: 10 classes x 200 = 2000 images
  int64_t eval_per_class = 50;             // finetune-val and each shift-*: 500 images each
  int64_t threads = 0;                     // writer threads; 0: one per core. Never changes the images
};

// "pretrain-train", "pretrain-val", "finetune-train", "finetune-val", "shift-rendition",
// "shift-sketch", "shift-corrupt", "shift-pose".
const std::vector<std::string>& synthetic_image_splits();
// Class names of SPLIT in label order (alphabetical, as ImageFolder readers sort them).
const std::vector<std::string>& synthetic_image_classes(const std::string& split);
// Images in SPLIT under CONFIG: classes x per-class count. Index i has label i % classes and is
// file number i / classes of its class directory.
int64_t synthetic_image_count(const SyntheticImageConfig& config, const std::string& split);
int64_t synthetic_image_label(const std::string& split, int64_t index);
// Image INDEX of SPLIT: (image_size, image_size, 3) uint8. Fails on an unknown split or an index
// outside [0, synthetic_image_count).
torch::Tensor synthetic_image(const SyntheticImageConfig& config, const std::string& split, int64_t index);

struct SyntheticImageTree {
  bool generated = false;  // false: a complete tree with the same manifest was already there
  int64_t images = 0;      // images in the tree
  double seconds = 0;      // time spent generating (0 when cached)
};
// Writes the ImageFolder tree DIR/SPLIT/CLASS/00000.png for every split, plus DIR/manifest.json
// (the config and per-split counts). Built in a temporary directory beside DIR and renamed into
// place, so DIR is complete or absent; a DIR with the same manifest is kept as is, one with
// another synthetic manifest is replaced, and anything else there is an error.
SyntheticImageTree write_synthetic_images(const SyntheticImageConfig& config, const std::string& dir);

}  // namespace lofi::demo
