// The geometry of the generated image classes: each class is a planar shape built from polygons
// and ellipses (unions and cut-outs), rasterised at a pose with supersampled coverage, and as an
// outline for line drawings. Colours, textures and scenes are synthetic_images.cpp's business.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lofi::demo {

// Pretraining classes (16 simple shapes) and fine-tuning classes (10 different, mostly composite
// ones), so that pretrained features (edges, corners, curvature) help but the head is new.
enum class ShapeTask { kPretrain, kFinetune };

// Class names in label order, which is also alphabetical, so an ImageFolder reader that sorts
// its class directories assigns the same labels.
const std::vector<std::string>& shape_class_names(ShapeTask task);

// Where a shape lands on the canvas. Shapes are defined in a unit frame (about [-1, 1]^2).
struct ShapePose {
  double cx = 16, cy = 16;  // centre, in pixels, e.g. 16 on a 32-pixel canvas
  double scale = 10;        // pixels per unit, e.g. 10: the shape spans about 20 pixels
  double angle = 0;         // rotation in radians
  double aspect = 1;        // stretch along the shape's own x axis, e.g. 0.6 squashes it
};

// Per-pixel coverage in [0, 1], (SIZE, SIZE) row-major.
struct ShapeRaster {
  std::vector<float> fill;  // fraction of the pixel inside the shape
  std::vector<float> edge;  // fraction of the pixel within about half a pixel of the outline; empty unless asked
};

// Rasterises class CLS of TASK at POSE on a SIZE x SIZE canvas with SUPERSAMPLE^2 samples per pixel.
ShapeRaster rasterize_shape(ShapeTask task, int64_t cls, const ShapePose& pose, int64_t size, bool with_edge,
                            int supersample = 4);

}  // namespace lofi::demo
