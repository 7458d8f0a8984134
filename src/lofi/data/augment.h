// Image transforms of DeiT fine-tuning (timm's create_transform): the training transform
// (RandomResizedCrop, horizontal flip, colour jitter, normalisation) and the evaluation
// transform (resize the shorter side to image_size / crop_pct, centre crop, normalisation).
// All arithmetic is LibTorch tensor ops; randomness comes from a generator the caller owns, so
// a sample's augmentation depends on that generator's seed alone. Batch mixing is in mixup.h.
#pragma once
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>

namespace lofi::data {

// Defaults are DeiT's fine-tuning recipe (deit/main.py flags, timm create_transform). Not here:
// DeiT's RandAugment (rand-m9-mstd0.5-inc1) and RandomErasing (p 0.25); with RandAugment on,
// timm skips colour jitter, so color_jitter = 0 is the closer match to DeiT when adding it.
struct AugmentConfig {
  int64_t image_size = 224;        // side S of the square model input, e.g. 224 (DeiT), 32 (demo)
  double scale_min = 0.08;         // RandomResizedCrop: smallest crop area / image area, e.g. 0.08
  double scale_max = 1.0;          // RandomResizedCrop: largest crop area / image area
  double ratio_min = 3.0 / 4.0;    // RandomResizedCrop: crop aspect (w / h) range, log-uniform
  double ratio_max = 4.0 / 3.0;
  double hflip = 0.5;              // probability of a horizontal flip, e.g. 0.5; 0 disables
  double color_jitter = 0.3;       // brightness, contrast and saturation strength s: factors
                                   // drawn from [1 - s, 1 + s] (DeiT: 0.3); 0 disables
  double color_jitter_hue = 0.0;   // hue shift drawn from [-h, h], h <= 0.5 (timm: 0)
  std::array<double, 3> mean{0.485, 0.456, 0.406};  // per-channel normalisation (ImageNet)
  std::array<double, 3> std{0.229, 0.224, 0.225};
  double crop_pct = 0.875;         // eval: resize the shorter side to floor(S / crop_pct), then crop S
  std::string interpolation = "bicubic";  // "bicubic" or "bilinear"; always antialiased
  double mixup_alpha = 0.8;        // Beta(a, a) for mixup's lambda, e.g. 0.8; 0 disables mixup
  double cutmix_alpha = 1.0;       // Beta(a, a) for CutMix's lambda, e.g. 1.0; 0 disables CutMix
  double mix_prob = 1.0;           // probability that a batch is mixed at all
  double switch_prob = 0.5;        // with both alphas set: probability of CutMix over mixup
  double label_smoothing = 0.1;    // mass spread uniformly over all classes, e.g. 0.1
};

// Checks ranges and names; throws lofi::Error naming the offending field.
void validate(const AugmentConfig& config);

// A crop of an image, in pixels.
struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// torchvision's RandomResizedCrop.get_params for an HEIGHT x WIDTH image: up to 10 draws of
// (area, log-aspect), then a centre crop clamped to the aspect range.
CropBox random_resized_crop_box(int64_t height, int64_t width, const AugmentConfig& config, at::Generator& gen);

// (H, W, 3) uint8 -> (3, HEIGHT, WIDTH) float in [0, 1], antialiased, clamped to [0, 1] as a
// uint8 pipeline would be.
torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width, const std::string& interpolation);

// torchvision's F.adjust_* on (3, H, W) float in [0, 1]; factor 1 (shift 0) is the identity.
torch::Tensor adjust_brightness(const torch::Tensor& image, double factor);
torch::Tensor adjust_contrast(const torch::Tensor& image, double factor);
torch::Tensor adjust_saturation(const torch::Tensor& image, double factor);
torch::Tensor adjust_hue(const torch::Tensor& image, double shift);  // shift in [-0.5, 0.5]

// torchvision's ColorJitter on (3, H, W) float in [0, 1]: the four adjustments in random order.
torch::Tensor color_jitter(const torch::Tensor& image, const AugmentConfig& config, at::Generator& gen);

// (3, H, W) float in [0, 1] -> (3, H, W) (x - mean) / std.
torch::Tensor normalize_image(const torch::Tensor& image, const AugmentConfig& config);

// Training transform: (H, W, 3) uint8 -> (3, S, S) float, normalised.
torch::Tensor train_transform(const torch::Tensor& image, const AugmentConfig& config, at::Generator& gen);

// Evaluation transform: (H, W, 3) uint8 -> (3, S, S) float, normalised. Deterministic.
torch::Tensor eval_transform(const torch::Tensor& image, const AugmentConfig& config);

}  // namespace lofi::data
