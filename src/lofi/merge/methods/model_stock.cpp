// model-stock: Model Stock (Jang et al., ECCV 2024, "Model Stock: All we need is just a few
// fine-tuned models"), the merge made for fine-tunes of one base, as mergekit's `model_stock`
// computes it: per tensor, the mean cosine c between the inputs' differences from the base (over
// every pair), t = N c / (1 + (N - 1) c), and t * mean(inputs) + (1 - t) * base. Where
// 1 + (N - 1) c vanishes, the base is kept. Weights are not used: the method sets its own.
#include <algorithm>
#include <cmath>

#include "lofi/error.h"
#include "lofi/merge/method.h"

namespace lofi::merge {
namespace {

class ModelStock : public Method {
 public:
  bool needs_base() const override { return true; }
  bool whole_tensors() const override { return true; }  // the cosines are over whole tensors
  bool uses_weights() const override { return false; }
  std::string summary() const override {
    return "Model Stock: the inputs' mean moved toward the base by how far their differences from it agree "
           "(mean cosine); weights unused";
  }
  void check(size_t inputs, const MethodParams&) const override {
    if (inputs < 2) fail("model-stock needs at least 2 fine-tuned inputs besides --base (their differences' angles set the merge), found ", inputs);
  }

  torch::Tensor merge(Piece piece, const MethodParams&) const override {
    const torch::Dtype dtype = compute_dtype(piece.inputs[0].scalar_type());
    const torch::Tensor base = piece.base.to(dtype);
    std::vector<torch::Tensor> offsets;
    torch::Tensor sum = torch::zeros_like(base);
    for (auto& x : piece.inputs) {
      torch::Tensor xi = x.to(dtype);
      sum += xi;
      offsets.push_back(xi - base);
      x = torch::Tensor();  // free the input early
    }
    const int64_t n = static_cast<int64_t>(offsets.size());
    // The mean over pairs of cos(offset_a, offset_b), each clamped to [-1, 1], norms' product at least 1e-6.
    double cos_sum = 0;
    int64_t pairs = 0;
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = a + 1; b < n; ++b, ++pairs) {
        const double norms = std::max((offsets[a].norm() * offsets[b].norm()).item<double>(), 1e-6);
        cos_sum += std::clamp((offsets[a] * offsets[b]).sum().item<double>() / norms, -1.0, 1.0);
      }
    const double c = cos_sum / static_cast<double>(pairs);
    const double denominator = 1 + static_cast<double>(n - 1) * c;
    const double t = std::abs(denominator) < 1e-6 ? 0.0 : static_cast<double>(n) * c / denominator;
    return sum / static_cast<double>(n) * t + base * (1 - t);
  }
};

}  // namespace
}  // namespace lofi::merge

LOFI_MERGE_METHOD(model_stock, "model-stock", ModelStock)
