// ties: TIES-merging (Yadav et al. 2023, "Resolving interference when merging models"), as
// mergekit's `ties` computes it: each input's difference from the base keeps its top --density
// fraction by magnitude (per tensor), is weighted, and each element takes the sign of the weighted
// sum; the differences that agree with it are averaged (divided by the sum of their weights),
// scaled by --lambda and added to the base.
#include "lofi/error.h"
#include "lofi/merge/method.h"

namespace lofi::merge {
namespace {

// DELTA with all but its K = max(1, density * numel) largest magnitudes zeroed, in place (mergekit's
// `magnitude` sparsification). The K-th largest magnitude is found by selection, O(numel), where a
// sort would take minutes on an embedding; of magnitudes equal to it, the first by index are kept,
// so exactly K survive (mergekit's sort breaks such ties arbitrarily).
torch::Tensor keep_largest(torch::Tensor delta, double density) {
  const int64_t n = delta.numel();
  if (density >= 1.0 || n == 0) return delta;
  const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(density * static_cast<double>(n)));
  const torch::Tensor magnitude = delta.abs();
  const torch::Tensor threshold = std::get<0>(magnitude.kthvalue(n - k + 1));  // the k-th largest
  torch::Tensor keep = magnitude > threshold;
  const int64_t missing = k - keep.sum().item<int64_t>();
  if (missing > 0) {
    const torch::Tensor tied = magnitude == threshold;
    keep.logical_or_(tied.logical_and(tied.cumsum(0) <= missing));
  }
  return delta.mul_(keep);
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

  torch::Tensor merge(Piece piece, const MethodParams& p) const override {
    const torch::Dtype dtype = compute_dtype(piece.base.scalar_type());
    const torch::Tensor base = piece.base.to(dtype);
    std::vector<torch::Tensor> deltas;  // weighted, trimmed differences
    for (size_t i = 0; i < piece.inputs.size(); ++i) {
      deltas.push_back(keep_largest(piece.inputs[i].to(dtype) - base, p.density).mul_(piece.weights[i]));
      piece.inputs[i] = torch::Tensor();  // the difference is all that is needed of it
    }
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
