// The transforms of augment.h, following torchvision 0.14's tensor implementations line by
// line (RandomResizedCrop.get_params, F.adjust_*, _rgb2hsv/_hsv2rgb, CenterCrop), so that
// their behaviour, not just their spirit, carries over.
#include "lofi/data/augment.h"

#include <cmath>

#include "lofi/error.h"

namespace lofi::data {
namespace {

double uniform(at::Generator& gen, double low, double high) {
  return torch::empty({1}, torch::kDouble).uniform_(low, high, gen).item<double>();
}

// Uniform integer in [low, high), as torch.randint.
int64_t randint(at::Generator& gen, int64_t low, int64_t high) {
  return torch::randint(low, high, {1}, gen, torch::kLong).item<int64_t>();
}

// Python's round(): halves go to the even neighbour (the default FE_TONEAREST mode).
int64_t round_even(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

torch::Tensor grayscale(const torch::Tensor& image) {  // (3, H, W) -> (1, H, W)
  return (0.2989 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0);
}

torch::Tensor blend(const torch::Tensor& a, const torch::Tensor& b, double ratio) {
  return (ratio * a + (1.0 - ratio) * b).clamp_(0.0, 1.0);
}

torch::Tensor rgb_to_hsv(const torch::Tensor& image) {  // (3, H, W) -> (3, H, W)
  auto r = image[0], g = image[1], b = image[2];
  auto maxc = std::get<0>(image.max(0)), minc = std::get<0>(image.min(0));
  auto eqc = maxc == minc;
  auto cr = maxc - minc;
  auto ones = torch::ones_like(maxc);
  auto s = cr / torch::where(eqc, ones, maxc);
  auto cr_divisor = torch::where(eqc, ones, cr);
  auto rc = (maxc - r) / cr_divisor, gc = (maxc - g) / cr_divisor, bc = (maxc - b) / cr_divisor;
  auto hr = (maxc == r) * (bc - gc);
  auto hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc);
  auto hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc);
  auto h = torch::fmod((hr + hg + hb) / 6.0 + 1.0, 1.0);
  return torch::stack({h, s, maxc});
}

torch::Tensor hsv_to_rgb(const torch::Tensor& hsv) {  // (3, H, W) -> (3, H, W)
  auto h = hsv[0], s = hsv[1], v = hsv[2];
  auto i = torch::floor(h * 6.0);
  auto f = h * 6.0 - i;
  auto p = (v * (1.0 - s)).clamp(0.0, 1.0);
  auto q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
  auto t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
  auto sector = torch::remainder(i.to(torch::kLong), 6);  // (H, W) in [0, 6)
  auto choices = torch::stack({torch::stack({v, q, p, p, t, v}), torch::stack({t, v, v, q, p, p}),
                               torch::stack({p, p, t, v, v, q})});  // (3, 6, H, W)
  auto index = sector.unsqueeze(0).unsqueeze(0).expand({3, 1, h.size(0), h.size(1)});  // (3, 1, H, W)
  return choices.gather(1, index).squeeze(1);
}

}  // namespace

void validate(const AugmentConfig& c) {
  if (c.image_size < 1) fail("augment.image_size: expected >= 1, found ", c.image_size);
  if (!(c.scale_min > 0 && c.scale_min <= c.scale_max && c.scale_max <= 1))
    fail("augment.scale_min/scale_max: expected 0 < min <= max <= 1, found ", c.scale_min, ", ", c.scale_max);
  if (!(c.ratio_min > 0 && c.ratio_min <= c.ratio_max))
    fail("augment.ratio_min/ratio_max: expected 0 < min <= max, found ", c.ratio_min, ", ", c.ratio_max);
  if (!(c.hflip >= 0 && c.hflip <= 1)) fail("augment.hflip: expected a probability, found ", c.hflip);
  if (!(c.color_jitter >= 0)) fail("augment.color_jitter: expected >= 0, found ", c.color_jitter);
  if (!(c.color_jitter_hue >= 0 && c.color_jitter_hue <= 0.5))
    fail("augment.color_jitter_hue: expected 0 to 0.5, found ", c.color_jitter_hue);
  for (double s : c.std)
    if (!(s > 0)) fail("augment.std: expected positive values, found ", s);
  if (!(c.crop_pct > 0 && c.crop_pct <= 1)) fail("augment.crop_pct: expected 0 < crop_pct <= 1, found ", c.crop_pct);
  if (c.interpolation != "bicubic" && c.interpolation != "bilinear")
    fail("augment.interpolation: expected \"bicubic\" or \"bilinear\", found \"", c.interpolation, "\"");
  if (!(c.mixup_alpha >= 0) || !(c.cutmix_alpha >= 0))
    fail("augment.mixup_alpha/cutmix_alpha: expected >= 0, found ", c.mixup_alpha, ", ", c.cutmix_alpha);
  if (!(c.mix_prob >= 0 && c.mix_prob <= 1)) fail("augment.mix_prob: expected a probability, found ", c.mix_prob);
  if (!(c.switch_prob >= 0 && c.switch_prob <= 1))
    fail("augment.switch_prob: expected a probability, found ", c.switch_prob);
  if (!(c.label_smoothing >= 0 && c.label_smoothing < 1))
    fail("augment.label_smoothing: expected 0 <= s < 1, found ", c.label_smoothing);
}

CropBox random_resized_crop_box(int64_t height, int64_t width, const AugmentConfig& c, at::Generator& gen) {
  double area = static_cast<double>(height * width);
  double log_lo = std::log(c.ratio_min), log_hi = std::log(c.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target_area = area * uniform(gen, c.scale_min, c.scale_max);
    double aspect = std::exp(uniform(gen, log_lo, log_hi));
    int64_t w = round_even(std::sqrt(target_area * aspect));
    int64_t h = round_even(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      int64_t top = randint(gen, 0, height - h + 1);
      int64_t left = randint(gen, 0, width - w + 1);
      return {top, left, h, w};
    }
  }
  // Fallback: the whole image, cut down to the nearest allowed aspect, centred.
  double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  if (in_ratio < c.ratio_min) {
    h = round_even(static_cast<double>(w) / c.ratio_min);
  } else if (in_ratio > c.ratio_max) {
    w = round_even(static_cast<double>(h) * c.ratio_max);
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width, const std::string& interpolation) {
  namespace F = torch::nn::functional;
  auto x = image.permute({2, 0, 1}).to(torch::kFloat).div_(255.0).unsqueeze(0);  // (1, 3, H, W)
  auto options = F::InterpolateFuncOptions().size(std::vector<int64_t>{height, width}).align_corners(false).antialias(true);
  if (interpolation == "bilinear") {
    options.mode(torch::kBilinear);
  } else if (interpolation == "bicubic") {
    options.mode(torch::kBicubic);
  } else {
    fail("augment.interpolation: expected \"bicubic\" or \"bilinear\", found \"", interpolation, "\"");
  }
  return F::interpolate(x, options).squeeze(0).clamp_(0.0, 1.0);  // (3, height, width)
}

torch::Tensor adjust_brightness(const torch::Tensor& image, double factor) {
  return blend(image, torch::zeros_like(image), factor);
}

torch::Tensor adjust_contrast(const torch::Tensor& image, double factor) {
  return blend(image, grayscale(image).mean(), factor);
}

torch::Tensor adjust_saturation(const torch::Tensor& image, double factor) {
  return blend(image, grayscale(image), factor);
}

torch::Tensor adjust_hue(const torch::Tensor& image, double shift) {
  auto hsv = rgb_to_hsv(image);
  hsv[0] = torch::remainder(hsv[0] + shift, 1.0);
  return hsv_to_rgb(hsv);
}

torch::Tensor color_jitter(const torch::Tensor& image, const AugmentConfig& c, at::Generator& gen) {
  // Draw order as ColorJitter.get_params: permutation, then brightness, contrast, saturation, hue.
  auto order = torch::randperm(4, gen, torch::kLong);
  double s = c.color_jitter;
  double factors[3] = {1.0, 1.0, 1.0};
  for (double& f : factors)
    if (s > 0) f = uniform(gen, std::max(0.0, 1.0 - s), 1.0 + s);
  double hue = c.color_jitter_hue > 0 ? uniform(gen, -c.color_jitter_hue, c.color_jitter_hue) : 0.0;
  auto x = image;
  for (int64_t k = 0; k < 4; ++k) {
    int64_t fn = order[k].item<int64_t>();
    if (fn == 0 && s > 0) x = adjust_brightness(x, factors[0]);
    if (fn == 1 && s > 0) x = adjust_contrast(x, factors[1]);
    if (fn == 2 && s > 0) x = adjust_saturation(x, factors[2]);
    if (fn == 3 && hue != 0.0) x = adjust_hue(x, hue);
  }
  return x;
}

torch::Tensor normalize_image(const torch::Tensor& image, const AugmentConfig& c) {
  auto mean = torch::tensor({c.mean[0], c.mean[1], c.mean[2]}, torch::kFloat).view({3, 1, 1});
  auto std = torch::tensor({c.std[0], c.std[1], c.std[2]}, torch::kFloat).view({3, 1, 1});
  return (image - mean) / std;
}

torch::Tensor train_transform(const torch::Tensor& image, const AugmentConfig& c, at::Generator& gen) {
  CropBox box = random_resized_crop_box(image.size(0), image.size(1), c, gen);
  auto crop = image.slice(0, box.top, box.top + box.height).slice(1, box.left, box.left + box.width);  // (h, w, 3)
  auto x = resize_image(crop, c.image_size, c.image_size, c.interpolation);  // (3, S, S)
  if (c.hflip > 0 && uniform(gen, 0.0, 1.0) < c.hflip) x = x.flip({2});
  if (c.color_jitter > 0 || c.color_jitter_hue > 0) x = color_jitter(x, c, gen);
  return normalize_image(x, c);
}

torch::Tensor eval_transform(const torch::Tensor& image, const AugmentConfig& c) {
  int64_t height = image.size(0), width = image.size(1);
  // timm: scale_size = floor(S / crop_pct); torchvision Resize(int): shorter side to that,
  // longer side int(size * long / short).
  auto side = static_cast<int64_t>(std::floor(static_cast<double>(c.image_size) / c.crop_pct));
  int64_t new_h = side, new_w = side;
  if (height < width) new_w = static_cast<int64_t>(static_cast<double>(side) * width / height);
  if (width < height) new_h = static_cast<int64_t>(static_cast<double>(side) * height / width);
  auto x = resize_image(image, new_h, new_w, c.interpolation);  // (3, new_h, new_w)
  int64_t top = round_even(static_cast<double>(new_h - c.image_size) / 2.0);
  int64_t left = round_even(static_cast<double>(new_w - c.image_size) / 2.0);
  x = x.slice(1, top, top + c.image_size).slice(2, left, left + c.image_size);  // (3, S, S)
  return normalize_image(x, c);
}

}  // namespace lofi::data
