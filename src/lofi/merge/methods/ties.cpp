// ties: TIES-merging (Yadav et al. 2023, "Resolving interference when merging models"), as
// mergekit's `ties` computes it: each input's difference from the base keeps its top --density
// fraction by magnitude (per tensor), is weighted, and each element takes the sign of the weighted
// sum; the differences that agree with it are averaged (divided by the sum of their weights),
// scaled by --lambda and added to the base.
#include "lofi/error.h"
#include "lofi/merge/method.h"

namespace lofi::merge {
namespace {

// DELTA with all but its K largest magnitudes zeroed (mergekit's `magnitude` sparsification).
torch::Tensor keep_largest(const torch::Tensor& delta, double density) {
  if (density >= 1.0 || delta.numel() == 0) return delta;
  const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(density * static_cast<double>(delta.numel())));
  torch::Tensor keep = torch::zeros_like(delta);
  keep.index_fill_(0, std::get<1>(delta.abs().topk(k, 0, /*largest=*/true, /*sorted=*/false)), 1);
  return delta * keep;
}

class Ties : public Method {
 public:
  bool needs_base() const override { return true; }
  bool whole_tensors() const override { return true; }
  std::string summary() const override {
    return "TIES: trim each difference from the base to its top --density, elect signs, mean of the agreeing";
  }
  void check(size_t, const MethodParams& p) const override {
    if (!(p.density > 0 && p.density <= 1)) fail("--density must be in (0, 1] (the fraction of each difference kept), found ", p.density);
  }
  nlohmann::json describe(const MethodParams& p) const override { return {{"density", p.density}, {"lambda", p.lambda}}; }

  torch::Tensor merge(const Piece& piece, const MethodParams& p) const override {
    const torch::Dtype dtype = compute_dtype(piece.base.scalar_type());
    const torch::Tensor base = piece.base.to(dtype);
    std::vector<torch::Tensor> deltas;  // weighted, trimmed differences
    for (size_t i = 0; i < piece.inputs.size(); ++i)
      deltas.push_back(keep_largest(piece.inputs[i].to(dtype) - base, p.density).mul_(piece.weights[i]));
    torch::Tensor sum = torch::zeros_like(base);
    for (const auto& d : deltas) sum.add_(d);
    const torch::Tensor majority = torch::where(sum >= 0, 1.0, -1.0).to(dtype);  // ties go to +
    torch::Tensor mixed = torch::zeros_like(base), divisor = torch::zeros_like(base);
    for (size_t i = 0; i < deltas.size(); ++i) {
      const torch::Tensor agrees = (deltas[i].sign() == majority).to(dtype);
      mixed.add_(deltas[i] * agrees);
      divisor.add_(agrees, piece.weights[i]);
    }
    divisor.masked_fill_(divisor == 0, 1.0);
    mixed.div_(divisor);
    if (p.lambda != 1.0) mixed.mul_(p.lambda);
    return mixed.add_(base);
  }
};

}  // namespace
}  // namespace lofi::merge

LOFI_MERGE_METHOD(ties, "ties", Ties)
