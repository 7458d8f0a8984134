// dare: DARE (Yu et al. 2024, "Language models are Super Mario"), as mergekit's `dare_linear`
// computes it: each input's difference from the base keeps each element with probability
// --density (a Bernoulli mask), is rescaled so its L1 norm is unchanged, weighted, summed, scaled
// by --lambda and added to the base. The masks are seeded per tensor: seed::merge_mask(--seed,
// tensor name) seeds a PyTorch CPU generator that draws the inputs' masks in input order, so a
// merge is the same on any thread count and matches mergekit given the same generator seeds.
#include <xxhash.h>

#include "lofi/error.h"
#include "lofi/merge/method.h"
#include "lofi/seed.h"

namespace lofi::merge {
namespace {

// DELTA * MASK * |DELTA|_1 / |DELTA * MASK|_1 (mergekit's `rescaled_masked_tensor`, L1 norm).
torch::Tensor rescaled(const torch::Tensor& delta, const torch::Tensor& mask) {
  torch::Tensor masked = delta * mask;
  // Summed in fp64 (mergekit sums in the tensor's dtype): the same on any thread count.
  const double before = delta.abs().sum(torch::kFloat64).item<double>(), after = masked.abs().sum(torch::kFloat64).item<double>();
  constexpr double kEps = 1e-7;
  if (before < kEps || after < kEps) return masked;
  return masked.mul_(before / after);
}

class Dare : public Method {
 public:
  bool needs_base() const override { return true; }
  bool whole_tensors() const override { return true; }  // the L1 rescale is per tensor
  std::string summary() const override {
    return "DARE: drop each difference's elements with probability 1 - --density (seeded), rescale, add to the base";
  }
  void check(size_t, const MethodParams& p) const override {
    if (!(p.density > 0 && p.density <= 1)) fail("--density must be in (0, 1] (the probability of keeping an element), found ", p.density);
  }
  nlohmann::json describe(const MethodParams& p) const override {
    return {{"density", p.density}, {"lambda", p.lambda}, {"seed", p.seed}};
  }

  torch::Tensor merge(Piece piece, const MethodParams& p) const override {
    const torch::Dtype dtype = compute_dtype(piece.inputs[0].scalar_type());
    const torch::Tensor base = piece.base.to(dtype);
    auto generator = at::detail::createCPUGenerator(seed::merge_mask(p.seed, XXH3_64bits(piece.name.data(), piece.name.size())));
    torch::Tensor mixed = torch::zeros_like(base);
    for (size_t i = 0; i < piece.inputs.size(); ++i) {
      torch::Tensor delta = piece.inputs[i].to(dtype) - base;
      piece.inputs[i] = torch::Tensor();  // the difference is all that is needed of it
      if (p.density < 1.0) {
        // Drawn as mergekit draws it: Bernoulli of a float32 tensor of probabilities.
        const torch::Tensor keep = torch::bernoulli(torch::full_like(delta, p.density, torch::kFloat32), generator);
        delta = rescaled(delta, keep.to(dtype));
      }
      mixed.add_(delta, piece.weights[i]);
    }
    if (p.lambda != 1.0) mixed.mul_(p.lambda);
    return mixed.add_(base);
  }
};

}  // namespace
}  // namespace lofi::merge

LOFI_MERGE_METHOD(dare, "dare", Dare)
