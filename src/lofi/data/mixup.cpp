// timm's Mixup (timm/data/mixup.py: _params_per_batch, _mix_batch, rand_bbox, mixup_target)
// in LibTorch. Beta(a, a) is drawn as G1 / (G1 + G2) from two Gamma(a) draws, since LibTorch
// has a Gamma sampler (at::_standard_gamma) but no Beta.
#include "lofi/data/mixup.h"

#include <algorithm>
#include <cmath>

#include "lofi/error.h"

namespace lofi::data {
namespace {

double draw_uniform(at::Generator& gen) { return torch::rand({1}, gen, torch::kDouble).item<double>(); }

double draw_beta(double alpha, at::Generator& gen) {
  auto g = at::_standard_gamma(torch::full({2}, alpha, torch::kDouble), gen);
  double a = g[0].item<double>(), b = g[1].item<double>();
  return a + b > 0 ? a / (a + b) : 0.5;
}

}  // namespace

torch::Tensor smooth_one_hot(const torch::Tensor& labels, int64_t num_classes, double smoothing) {
  double off = smoothing / static_cast<double>(num_classes), on = 1.0 - smoothing + off;
  auto out = torch::full({labels.size(0), num_classes}, off, torch::kFloat);  // (B, C)
  return out.scatter_(1, labels.to(torch::kLong).view({-1, 1}), on);
}

MixedBatch mix_batch(const torch::Tensor& images, const torch::Tensor& labels, int64_t num_classes,
                     const AugmentConfig& c, at::Generator& gen) {
  if (images.dim() != 4 || labels.dim() != 1 || images.size(0) != labels.size(0))
    fail("mix_batch: expected images (B, 3, S, S) and labels (B), found ", images.sizes(), " and ", labels.sizes());
  if (labels.numel() > 0 && (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= num_classes))
    fail("mix_batch: expected labels in [0, ", num_classes, "), found ", labels.min().item<int64_t>(), " to ",
         labels.max().item<int64_t>());
  MixedBatch out;
  // _params_per_batch: whether to mix, which kind, and lambda.
  if ((c.mixup_alpha > 0 || c.cutmix_alpha > 0) && draw_uniform(gen) < c.mix_prob) {
    if (c.mixup_alpha > 0 && c.cutmix_alpha > 0) out.cutmix = draw_uniform(gen) < c.switch_prob;
    else out.cutmix = c.cutmix_alpha > 0;
    out.lambda = draw_beta(out.cutmix ? c.cutmix_alpha : c.mixup_alpha, gen);
  }
  out.images = images.clone();
  if (out.lambda < 1.0) {
    auto flipped = images.flip({0});  // (B, 3, S, S): image b mixes with image B-1-b
    if (out.cutmix) {
      // rand_bbox: a box of (1 - lambda) of the area around a uniform centre, clipped to the image;
      // lambda is then corrected to the area actually kept.
      int64_t h = images.size(2), w = images.size(3);
      double ratio = std::sqrt(1.0 - out.lambda);
      auto cut_h = static_cast<int64_t>(static_cast<double>(h) * ratio);
      auto cut_w = static_cast<int64_t>(static_cast<double>(w) * ratio);
      int64_t cy = torch::randint(0, h, {1}, gen, torch::kLong).item<int64_t>();
      int64_t cx = torch::randint(0, w, {1}, gen, torch::kLong).item<int64_t>();
      int64_t y0 = std::clamp<int64_t>(cy - cut_h / 2, 0, h), y1 = std::clamp<int64_t>(cy + cut_h / 2, 0, h);
      int64_t x0 = std::clamp<int64_t>(cx - cut_w / 2, 0, w), x1 = std::clamp<int64_t>(cx + cut_w / 2, 0, w);
      using torch::indexing::Slice;
      out.images.index_put_({Slice(), Slice(), Slice(y0, y1), Slice(x0, x1)},
                            flipped.index({Slice(), Slice(), Slice(y0, y1), Slice(x0, x1)}));
      out.lambda = 1.0 - static_cast<double>((y1 - y0) * (x1 - x0)) / static_cast<double>(h * w);
    } else {
      out.images.mul_(out.lambda).add_(flipped, 1.0 - out.lambda);
    }
  }
  auto own = smooth_one_hot(labels, num_classes, c.label_smoothing);  // (B, C)
  out.targets = own * out.lambda + own.flip({0}) * (1.0 - out.lambda);
  return out;
}

torch::Tensor soft_target_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  if (logits.sizes() != targets.sizes())
    fail("soft_target_cross_entropy: expected logits and targets of one shape (B, C), found ", logits.sizes(),
         " and ", targets.sizes());
  return (-targets * torch::log_softmax(logits, -1)).sum(-1).mean();
}

}  // namespace lofi::data
