// Batch mixing of DeiT training (timm's Mixup in "batch" mode): one lambda per batch, mixup or
// CutMix, targets mixed with the batch's reverse, label smoothing; and the soft-target
// cross-entropy that trains on such targets. Per-image augmentation is in augment.h.
#pragma once
#include <torch/torch.h>

#include <cstdint>

#include "lofi/data/augment.h"

namespace lofi::data {

struct MixedBatch {
  torch::Tensor images;   // (B, 3, S, S) float, mixed
  torch::Tensor targets;  // (B, num_classes) float, rows sum to 1
  double lambda = 1.0;    // weight of each image's own label (after CutMix's area correction)
  bool cutmix = false;    // whether this batch used CutMix (else mixup, or nothing at lambda 1)
};

// Label-smoothed one-hot rows: (B) int64 -> (B, num_classes), off = s / C, on = 1 - s + s / C.
torch::Tensor smooth_one_hot(const torch::Tensor& labels, int64_t num_classes, double smoothing);

// timm Mixup(mode="batch") with the config's mixup_alpha, cutmix_alpha, mix_prob, switch_prob
// and label_smoothing. IMAGES (B, 3, S, S) and LABELS (B) int64 are not modified. With both
// alphas 0 the images pass through and the targets are smooth_one_hot(labels).
MixedBatch mix_batch(const torch::Tensor& images, const torch::Tensor& labels, int64_t num_classes,
                     const AugmentConfig& config, at::Generator& gen);

// Mean over the batch of -sum_c target_c * log_softmax(logits)_c: logits (B, C), targets (B, C).
// Equals torch cross_entropy(logits, labels) when targets are one-hot.
torch::Tensor soft_target_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace lofi::data
