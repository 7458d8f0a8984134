// slerp: spherical linear interpolation of two models, tensor by tensor, as mergekit's `slerp`
// computes it: each tensor is one vector; t = 0 gives the first input, t = 1 the second, and
// nearly parallel tensors (|cos| > 0.9995) are interpolated linearly.
#include <cmath>

#include "lofi/error.h"
#include "lofi/merge/method.h"

namespace lofi::merge {
namespace {

class Slerp : public Method {
 public:
  bool whole_tensors() const override { return true; }  // the angle is the whole tensor's
  bool uses_weights() const override { return false; }
  std::string summary() const override { return "spherical interpolation of two inputs, tensor by tensor, at --t"; }
  void check(size_t inputs, const MethodParams& p) const override {
    if (inputs != 2) fail("slerp interpolates two inputs, found ", inputs, "; give exactly two");
    if (!(p.t >= 0 && p.t <= 1)) fail("--t must be in [0, 1] (0: the first input, 1: the second), found ", p.t);
  }
  nlohmann::json describe(const MethodParams& p) const override { return {{"t", p.t}}; }

  torch::Tensor merge(Piece piece, const MethodParams& p) const override {
    const torch::Dtype dtype = compute_dtype(piece.inputs[0].scalar_type());
    const torch::Tensor a = piece.inputs[0].to(dtype), b = piece.inputs[1].to(dtype);
    const double t = p.t;
    constexpr double kEps = 1e-8, kDotThreshold = 0.9995;
    if (a.numel() == 0) return a.clone();
    // Norms and the dot product sum in fp64: the same on any thread count.
    auto norm = [&](const torch::Tensor& v) {
      const double n = v.square().sum(torch::kFloat64).sqrt().item<double>();
      return n > kEps ? n : 1.0;
    };
    const double na = norm(a), nb = norm(b);
    const double dot = std::clamp((a / na).mul_(b / nb).sum(torch::kFloat64).item<double>(), -1.0, 1.0);
    double ca = 1 - t, cb = t;
    if (std::abs(dot) <= kDotThreshold) {
      const double theta = std::acos(dot), s = std::sin(theta);
      ca = std::sin((1 - t) * theta) / s;
      cb = std::sin(t * theta) / s;
    }
    return a * ca + b * cb;
  }
};

}  // namespace
}  // namespace lofi::merge

LOFI_MERGE_METHOD(slerp, "slerp", Slerp)
