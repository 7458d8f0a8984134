// Scenes for each split. Drawing is plain loops over a float (H, W, 3) buffer rather than tensor
// ops: images are 32x32, each step touches every pixel once, loops read as the recipe they are,
// and they stay bit-identical however many threads LibTorch has.
#include "lofi/demo/synthetic_images.h"

#include <algorithm>
#include <cmath>

#include "lofi/demo/draws.h"
#include "lofi/demo/synthetic_shapes.h"
#include "lofi/error.h"

namespace lofi::demo {
namespace {

constexpr double kPi = 3.14159265358979323846;

enum class Style { kNatural, kRendition, kSketch, kCorrupt, kPose };

struct SplitInfo {
  const char* name;
  ShapeTask task;
  Style style;
  int64_t SyntheticImageConfig::*per_class;
};
const SplitInfo kSplits[] = {
    {"pretrain-train", ShapeTask::kPretrain, Style::kNatural, &SyntheticImageConfig::pretrain_train_per_class},
    {"pretrain-val", ShapeTask::kPretrain, Style::kNatural, &SyntheticImageConfig::pretrain_val_per_class},
    {"finetune-train", ShapeTask::kFinetune, Style::kNatural, &SyntheticImageConfig::finetune_train_per_class},
    {"finetune-val", ShapeTask::kFinetune, Style::kNatural, &SyntheticImageConfig::eval_per_class},
    {"shift-rendition", ShapeTask::kFinetune, Style::kRendition, &SyntheticImageConfig::eval_per_class},
    {"shift-sketch", ShapeTask::kFinetune, Style::kSketch, &SyntheticImageConfig::eval_per_class},
    {"shift-corrupt", ShapeTask::kFinetune, Style::kCorrupt, &SyntheticImageConfig::eval_per_class},
    {"shift-pose", ShapeTask::kFinetune, Style::kPose, &SyntheticImageConfig::eval_per_class},
};

// The split's row in kSplits and its position, which (not the name) seeds its images.
std::pair<const SplitInfo*, uint64_t> split_info(const std::string& split) {
  for (size_t i = 0; i < std::size(kSplits); ++i)
    if (split == kSplits[i].name) return {&kSplits[i], i};
  std::string known;
  for (const auto& s : kSplits) known += std::string(known.empty() ? "" : ", ") + s.name;
  fail("synthetic images: unknown split \"", split, "\"; expected one of ", known);
}

struct Rgb {
  float r = 0, g = 0, b = 0;
};
Rgb hsv(double h, double s, double v) {
  h = (h - std::floor(h)) * 6;
  int i = static_cast<int>(h) % 6;
  double f = h - std::floor(h), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r[] = {v, q, p, p, t, v}, g[] = {t, v, v, q, p, p}, b[] = {p, p, t, v, v, q};
  return {static_cast<float>(r[i]), static_cast<float>(g[i]), static_cast<float>(b[i])};
}

// A colour drawn uniformly in HSV ranges. Draws happen in statement order here: several draws in
// one call's arguments would run in an order the compiler picks, and images would differ by compiler.
struct Range {
  double lo, hi;
};
Rgb draw_color(Draws& d, Range hue, Range saturation, Range value) {
  double h = d.uniform(hue.lo, hue.hi);
  double s = d.uniform(saturation.lo, saturation.hi);
  double v = d.uniform(value.lo, value.hi);
  return hsv(h, s, v);
}

// An (n, n, 3) float image in [0, 1] (values may leave that range until quantised).
class Canvas {
 public:
  explicit Canvas(int64_t n) : n_(n), px_(static_cast<size_t>(n * n * 3)) {}
  int64_t size() const { return n_; }
  float& at(int64_t y, int64_t x, int c) { return px_[static_cast<size_t>((y * n_ + x) * 3 + c)]; }
  // Blends COLOR_AT(x, y) over the image with per-pixel opacity COVER (n, n) times ALPHA.
  template <typename ColorAt>
  void blend(const std::vector<float>& cover, ColorAt color_at, float alpha = 1) {
    for (int64_t y = 0; y < n_; ++y)
      for (int64_t x = 0; x < n_; ++x) {
        float a = alpha * cover[static_cast<size_t>(y * n_ + x)];
        if (a <= 0) continue;
        Rgb c = color_at(x, y);
        at(y, x, 0) += a * (c.r - at(y, x, 0));
        at(y, x, 1) += a * (c.g - at(y, x, 1));
        at(y, x, 2) += a * (c.b - at(y, x, 2));
      }
  }
  template <typename F>
  void each(F f) {  // f(value, y, x, channel) for every value
    for (int64_t y = 0; y < n_; ++y)
      for (int64_t x = 0; x < n_; ++x)
        for (int c = 0; c < 3; ++c) f(at(y, x, c), y, x, c);
  }
  torch::Tensor to_uint8() const {
    torch::Tensor out = torch::empty({n_, n_, 3}, torch::kUInt8);  // (H, W, 3)
    uint8_t* dst = out.data_ptr<uint8_t>();
    for (size_t i = 0; i < px_.size(); ++i)
      dst[i] = static_cast<uint8_t>(std::clamp(px_[i], 0.0f, 1.0f) * 255.0f + 0.5f);
    return out;
  }

 private:
  int64_t n_;
  std::vector<float> px_;
};

// Supersampled coverage of an arbitrary predicate, for clutter (4x4 samples per pixel), tested
// only inside the pixel box [X0, X1] x [Y0, Y1] that bounds it.
template <typename Inside>
std::vector<float> coverage(int64_t n, double x0, double y0, double x1, double y1, Inside inside) {
  std::vector<float> cover(static_cast<size_t>(n * n));
  auto lo = [&](double v) { return std::clamp<int64_t>(static_cast<int64_t>(std::floor(v)), 0, n); };
  auto hi = [&](double v) { return std::clamp<int64_t>(static_cast<int64_t>(std::floor(v)) + 1, 0, n); };
  for (int64_t y = lo(y0); y < hi(y1); ++y)
    for (int64_t x = lo(x0); x < hi(x1); ++x) {
      int count = 0;
      for (int b = 0; b < 4; ++b)
        for (int a = 0; a < 4; ++a) count += inside(static_cast<double>(x) + (a + 0.5) / 4, static_cast<double>(y) + (b + 0.5) / 4);
      cover[static_cast<size_t>(y * n + x)] = static_cast<float>(count) / 16.0f;
    }
  return cover;
}

// A random straight stroke of 4-9 pixels with squared half-width W2, as coverage.
std::vector<float> random_stroke(int64_t n, Draws& d, double w2) {
  double x0 = d.uniform(0, static_cast<double>(n)), y0 = d.uniform(0, static_cast<double>(n));
  double len = d.uniform(4, 9), a = d.uniform(0, kPi), ux = std::cos(a), uy = std::sin(a);
  double x1 = x0 + len * ux, y1 = y0 + len * uy, w = std::sqrt(w2);
  return coverage(n, std::min(x0, x1) - w, std::min(y0, y1) - w, std::max(x0, x1) + w, std::max(y0, y1) + w,
                  [&](double x, double y) {
    double t = std::clamp((x - x0) * ux + (y - y0) * uy, 0.0, len);
    double px = x0 + t * ux - x, py = y0 + t * uy - y;
    return px * px + py * py <= w2;
  });
}

// A two-colour gradient along a random direction, a faint grating (texture) and pixel noise.
void paint_background(Canvas& img, Draws& d, Rgb a, Rgb b) {
  double angle = d.uniform(0, 2 * kPi), period = d.uniform(3, 8), phase = d.uniform(0, 2 * kPi);
  double texture_angle = d.uniform(0, kPi), amplitude = d.uniform(0.02, 0.08);
  double n = static_cast<double>(img.size());
  const float ca[] = {a.r, a.g, a.b}, cb[] = {b.r, b.g, b.b};
  img.each([&](float& v, int64_t y, int64_t x, int c) {
    double t = 0.5 + ((x - n / 2) * std::cos(angle) + (y - n / 2) * std::sin(angle)) / n;
    double u = x * std::cos(texture_angle) + y * std::sin(texture_angle);
    v = static_cast<float>(ca[c] + (cb[c] - ca[c]) * std::clamp(t, 0.0, 1.0) +
                           amplitude * std::sin(2 * kPi * u / period + phase));
  });
  img.each([&](float& v, int64_t, int64_t, int) { v += static_cast<float>(0.03 * d.normal()); });
}

// Two to four small distractors behind the object: dots and short strokes of any colour.
void paint_clutter(Canvas& img, Draws& d) {
  double n = static_cast<double>(img.size());
  for (int64_t items = 2 + d.below(3); items > 0; --items) {
    Rgb color = draw_color(d, {0, 1}, {0.2, 1}, {0.1, 1});
    if (d.coin()) {
      double x0 = d.uniform(0, n), y0 = d.uniform(0, n), r = d.uniform(1, 2.2);
      img.blend(coverage(img.size(), x0 - r, y0 - r, x0 + r, y0 + r,
                         [&](double x, double y) { return (x - x0) * (x - x0) + (y - y0) * (y - y0) <= r * r; }),
                [&](int64_t, int64_t) { return color; });
    } else {
      img.blend(random_stroke(img.size(), d, 0.36), [&](int64_t, int64_t) { return color; });
    }
  }
}

// The pose of in-distribution objects: most of the canvas, any rotation, slight stretch.
ShapePose natural_pose(Draws& d, double n) {
  ShapePose p;
  p.scale = n * d.uniform(0.22, 0.36);
  p.cx = n * d.uniform(0.36, 0.64);
  p.cy = n * d.uniform(0.36, 0.64);
  p.angle = d.uniform(0, 2 * kPi);
  p.aspect = d.uniform(0.85, 1.15);
  return p;
}

// Unusual viewpoints, ObjectNet's spirit: tiny, strongly squashed, or large and cut by the border.
ShapePose unusual_pose(Draws& d, double n) {
  ShapePose p = natural_pose(d, n);
  switch (d.below(3)) {
    case 0:
      p.scale = n * d.uniform(0.13, 0.18);
      p.cx = n * d.uniform(0.22, 0.78);
      p.cy = n * d.uniform(0.22, 0.78);
      break;
    case 1: p.aspect = d.coin() ? d.uniform(0.5, 0.62) : d.uniform(1.6, 1.9); p.scale = n * d.uniform(0.24, 0.3); break;
    default:
      p.scale = n * d.uniform(0.42, 0.5);
      p.cx = n * (d.coin() ? d.uniform(0.3, 0.38) : d.uniform(0.62, 0.7));
      p.cy = n * d.uniform(0.35, 0.65);
  }
  return p;
}

// A photo-like scene: textured background, clutter, and the object in a solid colour with
// shading, always clearly lighter or darker than its surroundings.
Canvas natural_scene(ShapeTask task, int64_t cls, const ShapePose& pose, int64_t n, Draws& d) {
  Canvas img(n);
  bool light_object = d.coin();
  double bg_hue = d.uniform();
  Range bg_value = light_object ? Range{0.05, 0.35} : Range{0.65, 0.95};
  Rgb bg_a = draw_color(d, {bg_hue, bg_hue}, {0.1, 0.6}, bg_value);
  Rgb bg_b = draw_color(d, {bg_hue - 0.15, bg_hue + 0.15}, {0.1, 0.6}, bg_value);
  paint_background(img, d, bg_a, bg_b);
  paint_clutter(img, d);
  Rgb color = draw_color(d, {0, 1}, {0.5, 1}, light_object ? Range{0.75, 1} : Range{0.2, 0.45});
  double shade_angle = d.uniform(0, 2 * kPi), shade = d.uniform(0.05, 0.2);
  ShapeRaster shape = rasterize_shape(task, cls, pose, n, false);
  img.blend(shape.fill, [&](int64_t x, int64_t y) {
    double t = ((x - pose.cx) * std::cos(shade_angle) + (y - pose.cy) * std::sin(shade_angle)) / (2 * pose.scale);
    float k = static_cast<float>(1 + shade * t);
    return Rgb{color.r * k, color.g * k, color.b * k};
  });
  return img;
}

// ImageNet-R's spirit: the same shapes as artwork, with patterned fills, neon or inverted
// palettes and flat backgrounds; no clutter, no shading.
Canvas rendition_scene(ShapeTask task, int64_t cls, const ShapePose& pose, int64_t n, Draws& d) {
  Canvas img(n);
  // Both fill colours contrast with the background, so the silhouette survives the pattern.
  double hue = d.uniform();
  bool dark_bg = d.coin();
  Rgb bright = draw_color(d, {hue, hue}, {0.7, 1}, dark_bg ? Range{0.95, 1} : Range{0.1, 0.25});
  Rgb dark = draw_color(d, {hue + 0.3, hue + 0.7}, {0.6, 1}, dark_bg ? Range{0.55, 0.7} : Range{0.4, 0.55});
  Rgb bg = dark_bg ? draw_color(d, {0, 1}, {0, 0.3}, {0, 0.12}) : draw_color(d, {0, 1}, {0, 0.15}, {0.9, 1});
  img.each([&](float& v, int64_t, int64_t, int c) { v = c == 0 ? bg.r : c == 1 ? bg.g : bg.b; });
  int64_t pattern = d.below(4);
  double period = d.uniform(3.5, 5.5), angle = d.uniform(0, kPi), ca = std::cos(angle), sa = std::sin(angle);
  ShapeRaster shape = rasterize_shape(task, cls, pose, n, pattern == 3);
  img.blend(shape.fill, [&](int64_t x, int64_t y) {
    double u = (x + 0.5) * ca + (y + 0.5) * sa, w = -(x + 0.5) * sa + (y + 0.5) * ca;
    double fu = u / period - std::floor(u / period), fw = w / period - std::floor(w / period);
    switch (pattern) {
      case 0: return fu < 0.5 ? bright : dark;                                                        // stripes
      case 1: return (fu - 0.5) * (fu - 0.5) + (fw - 0.5) * (fw - 0.5) < 0.09 ? dark : bright;       // dots
      case 2: return (fu < 0.5) != (fw < 0.5) ? bright : dark;                                        // checks
      default: return bright;                                                                         // cartoon
    }
  });
  if (pattern == 3) img.blend(shape.edge, [&](int64_t, int64_t) { return Rgb{0.05f, 0.05f, 0.05f}; });  // ink outline
  if (d.coin(0.3)) img.each([](float& v, int64_t, int64_t, int) { v = 1 - v; });
  return img;
}

// ImageNet-Sketch's spirit: the outline only, dark strokes on paper, perhaps one stray stroke.
Canvas sketch_scene(ShapeTask task, int64_t cls, const ShapePose& pose, int64_t n, Draws& d) {
  Canvas img(n);
  float paper = static_cast<float>(d.uniform(0.88, 1)), ink = static_cast<float>(d.uniform(0, 0.25));
  float grain = 0;  // grey paper: one noise value per pixel, shared by its channels
  img.each([&](float& v, int64_t, int64_t, int c) {
    if (c == 0) grain = static_cast<float>(0.02 * d.normal());
    v = paper + grain;
  });
  ShapeRaster shape = rasterize_shape(task, cls, pose, n, true);
  img.blend(shape.edge, [&](int64_t, int64_t) { return Rgb{ink, ink, ink}; }, static_cast<float>(d.uniform(0.75, 1)));
  if (d.coin()) img.blend(random_stroke(n, d, 0.25), [&](int64_t, int64_t) { return Rgb{ink, ink, ink}; });
  return img;
}

// ImageNet-C's spirit, one corruption per image at a middling-to-heavy severity.
void corrupt(Canvas& img, Draws& d) {
  int64_t n = img.size();
  switch (d.below(5)) {
    case 0: {  // Gaussian noise
      double sigma = d.uniform(0.08, 0.16);
      img.each([&](float& v, int64_t, int64_t, int) { v += static_cast<float>(sigma * d.normal()); });
      break;
    }
    case 1: {  // blur: a 3x3 box filter, one or two passes (about a Gaussian of sigma 0.8-1.2)
      for (int64_t pass = 1 + d.below(2); pass > 0; --pass) {
        Canvas src = img;
        img.each([&](float& v, int64_t y, int64_t x, int c) {
          float sum = 0;
          for (int64_t b = -1; b <= 1; ++b)
            for (int64_t a = -1; a <= 1; ++a)
              sum += src.at(std::clamp<int64_t>(y + b, 0, n - 1), std::clamp<int64_t>(x + a, 0, n - 1), c);
          v = sum / 9;
        });
      }
      break;
    }
    case 2: {  // low contrast around mid-grey
      float k = static_cast<float>(d.uniform(0.3, 0.45));
      img.each([&](float& v, int64_t, int64_t, int) { v = 0.5f + k * (v - 0.5f); });
      break;
    }
    case 3: {  // fog: blend towards a bright haze
      float k = static_cast<float>(d.uniform(0.35, 0.5)), haze = static_cast<float>(d.uniform(0.6, 0.9));
      img.each([&](float& v, int64_t, int64_t, int) { v = k * v + (1 - k) * haze; });
      break;
    }
    default: {  // blockiness, JPEG-like: block means plus a coarsely quantised residual
      int64_t block = 2 + d.below(2);
      float step = static_cast<float>(d.uniform(0.2, 0.3));
      Canvas src = img;
      img.each([&](float& v, int64_t y, int64_t x, int c) {
        int64_t y0 = y / block * block, x0 = x / block * block;
        float mean = 0;
        int count = 0;
        for (int64_t b = y0; b < std::min(n, y0 + block); ++b)
          for (int64_t a = x0; a < std::min(n, x0 + block); ++a) mean += src.at(b, a, c), ++count;
        mean /= static_cast<float>(count);
        v = mean + step * std::round((v - mean) / step);
      });
    }
  }
}

}  // namespace

const std::vector<std::string>& synthetic_image_splits() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& s : kSplits) out.push_back(s.name);
    return out;
  }();
  return names;
}

const std::vector<std::string>& synthetic_image_classes(const std::string& split) {
  return shape_class_names(split_info(split).first->task);
}

int64_t synthetic_image_count(const SyntheticImageConfig& config, const std::string& split) {
  const SplitInfo* info = split_info(split).first;
  return static_cast<int64_t>(shape_class_names(info->task).size()) * (config.*(info->per_class));
}

int64_t synthetic_image_label(const std::string& split, int64_t index) {
  return index % static_cast<int64_t>(synthetic_image_classes(split).size());
}

torch::Tensor synthetic_image(const SyntheticImageConfig& config, const std::string& split, int64_t index) {
  auto [info, split_id] = split_info(split);
  int64_t count = synthetic_image_count(config, split);
  if (index < 0 || index >= count) fail("synthetic images: ", split, " index must lie in [0, ", count, "), found ", index);
  if (config.image_size < 8) fail("synthetic images: image_size must be at least 8, found ", config.image_size);
  int64_t n = config.image_size, cls = synthetic_image_label(split, index);
  Draws d(mix_seed(config.seed, split_id + 1, static_cast<uint64_t>(index)));
  double size = static_cast<double>(n);
  switch (info->style) {
    case Style::kNatural: return natural_scene(info->task, cls, natural_pose(d, size), n, d).to_uint8();
    case Style::kPose: return natural_scene(info->task, cls, unusual_pose(d, size), n, d).to_uint8();
    case Style::kRendition: return rendition_scene(info->task, cls, natural_pose(d, size), n, d).to_uint8();
    case Style::kSketch: return sketch_scene(info->task, cls, natural_pose(d, size), n, d).to_uint8();
    case Style::kCorrupt: {
      Canvas img = natural_scene(info->task, cls, natural_pose(d, size), n, d);
      corrupt(img, d);
      return img.to_uint8();
    }
  }
  fail("synthetic images: unhandled style");
}

}  // namespace lofi::demo
