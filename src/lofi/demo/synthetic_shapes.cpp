// Inside-tests are exact per sample (even-odd rule for polygons), so a pixel's coverage depends
// only on the pose: no accumulated drawing state, no order dependence, same bits on any thread.
#include "lofi/demo/synthetic_shapes.h"

#include <algorithm>
#include <cmath>

#include "lofi/error.h"

namespace lofi::demo {
namespace {

constexpr double kPi = 3.14159265358979323846;

struct Point {
  double x, y;
};

// One piece of a shape: a polygon or an ellipse, added to the shape or cut out of it, in order.
struct Part {
  bool cut = false;
  std::vector<Point> polygon;         // empty for an ellipse
  double cx = 0, cy = 0, rx = 0, ry = 0;  // the ellipse
  bool contains(double x, double y) const {
    if (polygon.empty()) {
      double dx = (x - cx) / rx, dy = (y - cy) / ry;
      return dx * dx + dy * dy <= 1;
    }
    bool in = false;
    for (size_t i = 0, j = polygon.size() - 1; i < polygon.size(); j = i++) {
      const Point &a = polygon[i], &b = polygon[j];
      if ((a.y > y) != (b.y > y) && x < (b.x - a.x) * (y - a.y) / (b.y - a.y) + a.x) in = !in;
    }
    return in;
  }
};
using Shape = std::vector<Part>;

Part poly(std::vector<Point> points, bool cut = false) { return Part{cut, std::move(points)}; }
Part ellipse(double cx, double cy, double rx, double ry, bool cut = false) { return Part{cut, {}, cx, cy, rx, ry}; }
Part disk(double cx, double cy, double r, bool cut = false) { return ellipse(cx, cy, r, r, cut); }
Part box(double x0, double y0, double x1, double y1, bool cut = false) {
  return poly({{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}}, cut);
}
// A regular N-gon of radius R, a vertex pointing up (y grows downwards on the canvas).
Part regular(int n, double r, bool cut = false) {
  std::vector<Point> p;
  for (int i = 0; i < n; ++i) p.push_back({r * std::sin(2 * kPi * i / n), -r * std::cos(2 * kPi * i / n)});
  return poly(p, cut);
}
// An N-pointed star: outer radius R_OUT, inner R_IN.
Part star(int n, double r_out, double r_in) {
  std::vector<Point> p;
  for (int i = 0; i < 2 * n; ++i) {
    double r = i % 2 ? r_in : r_out, a = kPi * i / n;
    p.push_back({r * std::sin(a), -r * std::cos(a)});
  }
  return poly(p);
}

// Label order is alphabetical (see the header); the test checks names against these tables.
const std::vector<Shape>& shapes(ShapeTask task) {
  static const std::vector<Shape> pretrain = {
      {poly({{-1, -0.25}, {0.2, -0.25}, {0.2, -0.65}, {1, 0}, {0.2, 0.65}, {0.2, 0.25}, {-1, 0.25}})},  // arrow
      {disk(0, 0, 1), disk(0.45, 0, 0.85, true)},                                                        // crescent
      {poly({{-1, -0.3}, {-0.3, -0.3}, {-0.3, -1}, {0.3, -1}, {0.3, -0.3}, {1, -0.3}, {1, 0.3}, {0.3, 0.3},
             {0.3, 1}, {-0.3, 1}, {-0.3, 0.3}, {-1, 0.3}})},                                             // cross
      {poly({{0, -1}, {0.55, 0}, {0, 1}, {-0.55, 0}})},                                                  // diamond
      {disk(0, 0, 0.9)},                                                                                 // disk
      {poly({{-0.7, -1}, {-0.2, -1}, {-0.2, 0.5}, {0.7, 0.5}, {0.7, 1}, {-0.7, 1}})},                    // ell
      {ellipse(0, 0, 1, 0.5)},                                                                           // ellipse
      {disk(-0.45, -0.3, 0.52), disk(0.45, -0.3, 0.52), poly({{-0.95, -0.12}, {0.95, -0.12}, {0, 1}})},  // heart
      {regular(6, 0.95)},                                                                                // hexagon
      {regular(5, 0.95)},                                                                                // pentagon
      {disk(0, 0, 1), disk(0, 0, 0.6, true)},                                                            // ring
      {disk(0, 0.3, 1), box(-1.1, -1.1, 1.1, 0.3, true)},                                               // semicircle
      {box(-0.8, -0.8, 0.8, 0.8)},                                                                       // square
      {star(5, 1, 0.42)},                                                                                // star
      {box(-1, -1, 1, -0.5), box(-0.25, -0.5, 0.25, 1)},                                                 // tee
      {regular(3, 1)},                                                                                   // triangle
  };
  static const std::vector<Shape> finetune = {
      {poly({{-1, -0.8}, {0, 0}, {-1, 0.8}}), poly({{1, -0.8}, {0, 0}, {1, 0.8}})},                      // bowtie
      {poly({{-1, -0.8}, {0, 0.2}, {1, -0.8}, {1, -0.15}, {0, 0.85}, {-1, -0.15}})},                     // chevron
      {regular(3, 1), regular(3, 0.5, true)},                                                            // delta
      {box(-0.85, -0.85, 0.85, 0.85), box(-0.5, -0.5, 0.5, 0.5, true)},                                  // frame
      {star(6, 1, 0.58)},                                                                                // hexagram
      {disk(0, -0.45, 0.52), box(-0.12, 0, 0.12, 1)},                                                    // lollipop
      {disk(-0.55, 0, 0.42), disk(0.55, 0, 0.42)},                                                       // pair
      {disk(0, 0, 1), disk(0, 0, 0.65, true), disk(0, 0, 0.3)},                                          // target
      {poly({{-1, 0.6}, {1, 0.6}, {0.45, -0.6}, {-0.45, -0.6}})},                                        // trapezoid
      {box(-0.72, -1, -0.48, 1), box(-0.12, -1, 0.12, 1), box(0.48, -1, 0.72, 1)},                       // tribar
  };
  return task == ShapeTask::kPretrain ? pretrain : finetune;
}

bool inside(const Shape& shape, double x, double y) {
  bool in = false;
  for (const Part& part : shape) {
    if (part.cut) in = in && !part.contains(x, y);
    else in = in || part.contains(x, y);
  }
  return in;
}

}  // namespace

const std::vector<std::string>& shape_class_names(ShapeTask task) {
  static const std::vector<std::string> pretrain = {"arrow",   "crescent", "cross",      "diamond", "disk",   "ell",
                                                    "ellipse", "heart",    "hexagon",    "pentagon", "ring",  "semicircle",
                                                    "square",  "star",     "tee",        "triangle"};
  static const std::vector<std::string> finetune = {"bowtie", "chevron", "delta",     "frame",    "hexagram",
                                                    "lollipop", "pair",  "target", "trapezoid", "tribar"};
  return task == ShapeTask::kPretrain ? pretrain : finetune;
}

ShapeRaster rasterize_shape(ShapeTask task, int64_t cls, const ShapePose& pose, int64_t size, bool with_edge,
                            int supersample) {
  const auto& table = shapes(task);
  if (cls < 0 || cls >= static_cast<int64_t>(table.size()))
    fail("rasterize_shape: class must lie in [0, ", table.size(), "), found ", cls);
  if (size <= 0 || supersample <= 0 || pose.scale <= 0 || pose.aspect <= 0)
    fail("rasterize_shape: size, supersample, scale and aspect must be positive");
  const Shape& shape = table[static_cast<size_t>(cls)];
  const int64_t k = supersample, n = size * k;  // the sample grid is (n, n)
  const double c = std::cos(pose.angle), s = std::sin(pose.angle);
  // Every shape lies within radius 1.5 of its frame's origin: samples farther out are outside,
  // which skips most of the canvas for small shapes.
  const double reach = 1.5 * pose.scale * std::max(1.0, pose.aspect);
  std::vector<uint8_t> in(static_cast<size_t>(n * n));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < n; ++i) {
      // Sample centre in pixels, then into the shape's frame: un-translate, un-rotate, un-scale.
      double dx = (static_cast<double>(i) + 0.5) / static_cast<double>(k) - pose.cx;
      double dy = (static_cast<double>(j) + 0.5) / static_cast<double>(k) - pose.cy;
      if (dx * dx + dy * dy > reach * reach) continue;
      double x = (c * dx + s * dy) / (pose.scale * pose.aspect), y = (-s * dx + c * dy) / pose.scale;
      in[static_cast<size_t>(j * n + i)] = inside(shape, x, y);
    }
  }
  // A sample is on the outline when a sample within half a pixel (k/2 samples, Euclidean) differs from it,
  // which makes the outline about one pixel wide.
  std::vector<uint8_t> edge;
  if (with_edge) {
    const int64_t r = std::max<int64_t>(1, k / 2);
    edge.assign(in.size(), 0);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < n; ++i) {
        uint8_t v = in[static_cast<size_t>(j * n + i)];
        bool differs = false;
        for (int64_t b = std::max<int64_t>(0, j - r); b <= std::min(n - 1, j + r) && !differs; ++b)
          for (int64_t a = std::max<int64_t>(0, i - r); a <= std::min(n - 1, i + r) && !differs; ++a)
            differs = (a - i) * (a - i) + (b - j) * (b - j) <= r * r && in[static_cast<size_t>(b * n + a)] != v;
        edge[static_cast<size_t>(j * n + i)] = differs;
      }
  }
  ShapeRaster out;
  auto pool = [&](const std::vector<uint8_t>& samples) {  // (n, n) samples -> (size, size) coverage
    std::vector<float> cover(static_cast<size_t>(size * size));
    for (int64_t y = 0; y < size; ++y)
      for (int64_t x = 0; x < size; ++x) {
        int count = 0;
        for (int64_t b = 0; b < k; ++b)
          for (int64_t a = 0; a < k; ++a) count += samples[static_cast<size_t>((y * k + b) * n + x * k + a)];
        cover[static_cast<size_t>(y * size + x)] = static_cast<float>(count) / static_cast<float>(k * k);
      }
    return cover;
  };
  out.fill = pool(in);
  if (with_edge) out.edge = pool(edge);
  return out;
}

}  // namespace lofi::demo
