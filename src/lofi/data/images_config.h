// The run config's [images] section: DeiT fine-tuning's augmentation (augment.h) and the image
// loader (image_loader.h) for model.arch = "vit".
#pragma once
#include <cstdint>
#include <string>

#include "lofi/settings.h"

namespace lofi::data {

struct ImagesConfig {
  double scale_min = 0.08;
  double hflip = 0.5;
  double color_jitter = 0.3;
  double mixup = 0.8;
  double cutmix = 1.0;
  double mix_prob = 1.0;
  double label_smoothing = 0.1;
  double crop_pct = 0.875;
  std::string interpolation = "bicubic";
  std::string on_bad_image = "skip";
  int64_t loader_threads = 1;
  int64_t prefetch = 4;

  void declare(Settings& s) {
    // The ranges augment.h's validate() holds them to, checked with the config (before the run
    // directory is touched) and named by these keys.
    s(scale_min, "scale_min", "RandomResizedCrop: smallest crop area / image area").above(0).at_most(1);
    s(hflip, "hflip", "horizontal flip probability").at_least(0).at_most(1);
    s(color_jitter, "color_jitter", "brightness/contrast/saturation strength; 0 disables").at_least(0);
    s(mixup, "mixup", "mixup Beta(a, a); 0 disables").at_least(0);
    s(cutmix, "cutmix", "CutMix Beta(a, a); 0 disables").at_least(0);
    s(mix_prob, "mix_prob", "probability that a batch is mixed").at_least(0).at_most(1);
    s(label_smoothing, "label_smoothing", "mass spread over all classes").in(0, 1);
    s(crop_pct, "crop_pct", "evaluation: resize to image_size / crop_pct, centre crop").above(0).at_most(1);
    s(interpolation, "interpolation", "\"bicubic\" or \"bilinear\"").one_of({"bicubic", "bilinear"});
    s(on_bad_image, "on_bad_image", "unreadable image: \"skip\" (warn, substitute) or \"fail\"").one_of({"skip", "fail"}).free();
    s(loader_threads, "loader_threads", "decoding threads per worker, beside its compute threads").at_least(1).free();
    s(prefetch, "prefetch", "batches decoded ahead of the trainer").at_least(1).free();
  }
};

}  // namespace lofi::data
