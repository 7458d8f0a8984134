#include "lofi/merge/nonfinite.h"

#include <cmath>
#include <cstdint>

#include "lofi/error.h"

namespace lofi::merge {
namespace {

// Whether N values of type BITS (their IEEE bit patterns) are all finite: the exponent bits
// (MASK) not all set. By hand, on the bits: it vectorises, and it is one pass where
// isfinite + all is three, on every byte a merge reads.
template <typename Bits>
bool all_finite_bits(const void* data, int64_t n, Bits mask) {
  const Bits* bits = static_cast<const Bits*>(data);
  Bits bad = 0;
  for (int64_t j = 0; j < n; ++j) bad |= static_cast<Bits>((bits[j] & mask) == mask);
  return bad == 0;
}

// Whether VALUES are all finite, quickly for the dtypes checkpoints hold.
bool all_finite(const torch::Tensor& values) {
  if (values.is_cpu() && values.is_contiguous()) {
    switch (values.scalar_type()) {
      case torch::kFloat32: return all_finite_bits<uint32_t>(values.data_ptr(), values.numel(), 0x7f800000u);
      case torch::kBFloat16: return all_finite_bits<uint16_t>(values.data_ptr(), values.numel(), 0x7f80u);
      case torch::kFloat16: return all_finite_bits<uint16_t>(values.data_ptr(), values.numel(), 0x7c00u);
      default: break;
    }
  }
  return torch::isfinite(values).all().item<bool>();
}

}  // namespace

void refuse_nonfinite(const torch::Tensor& values, const std::string& source, const std::string& name, int64_t offset,
                      const std::string& flag) {
  if (!values.is_floating_point() || values.numel() == 0 || all_finite(values)) return;
  torch::Tensor finite = torch::isfinite(values).reshape({-1});
  if (finite.all().item<bool>()) return;
  const int64_t index = (~finite).nonzero()[0][0].item<int64_t>();
  const double bad = values.reshape({-1})[index].item<double>();
  fail(source, ": tensor '", name, "' holds ", std::isnan(bad) ? "NaN" : "Inf", " (element ", offset + index,
       "): the weights of a diverged run; leave the file out, or pass ", flag, " to use it anyway");
}

void refuse_nonfinite(const io::NamedTensors& tensors, const std::string& source, const std::string& flag) {
  for (const auto& [name, t] : tensors) refuse_nonfinite(t, source, name, 0, flag);
}

}  // namespace lofi::merge
