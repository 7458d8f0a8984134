// The run config's keys for an image classifier (model.arch = "vit"): which timm architecture, at
// what input size, with how many classes. The language-model shape keys (lm_config.h) do not
// apply to it.
#pragma once
#include <cstdint>
#include <string>

#include "lofi/settings.h"

namespace lofi::model {

struct VitSettings {
  std::string preset = "vit_demo_patch4_32";
  int64_t image_size = 0;
  int64_t num_classes = 0;
  double drop_path = 0.1;

  void declare(Settings& s) {
    s(preset, "preset", "image classifiers (arch = \"vit\"): timm architecture, e.g. \"deit_base_patch16_224\"");
    s(image_size, "image_size", "input side in pixels; 0: the preset's, e.g. 224").at_least(0);
    s(num_classes, "num_classes", "classifier outputs; 0: the classes of data.train's folder").at_least(0);
    s(drop_path, "drop_path", "stochastic depth of the last block (DeiT fine-tuning: 0.1)").in(0, 1);
  }
};

}  // namespace lofi::model
