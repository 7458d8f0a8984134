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

std::optional<std::pair<int64_t, double>> first_nonfinite(const torch::Tensor& given) {
  // PyTorch has no isfinite for FP8: such values are checked as fp32.
  const torch::Tensor values = c10::isFloat8Type(given.scalar_type()) ? given.to(torch::kFloat) : given;
  if (!values.is_floating_point() || values.numel() == 0 || all_finite(values)) return std::nullopt;
  torch::Tensor finite = torch::isfinite(values).reshape({-1});
  if (finite.all().item<bool>()) return std::nullopt;
  const int64_t index = (~finite).nonzero()[0][0].item<int64_t>();
  return std::pair{index, values.reshape({-1})[index].item<double>()};
}

void refuse_nonfinite(const torch::Tensor& values, const std::string& source, const std::string& name, int64_t offset,
                      const std::string& flag) {
  const auto bad = first_nonfinite(values);
  if (!bad) return;
  fail(source, ": tensor '", name, "' holds ", std::isnan(bad->second) ? "NaN" : "Inf", " (element ", offset + bad->first,
       "): the weights of a diverged run; leave the file out, or pass ", flag, " to use it anyway");
}

void refuse_nonfinite_output(const torch::Tensor& values, const std::string& what, const std::string& name, int64_t offset) {
  const auto bad = first_nonfinite(values);
  if (!bad) return;
  fail(what, ": the merged tensor '", name, "' holds ", std::isnan(bad->second) ? "NaN" : "Inf", " (element ", offset + bad->first,
       ") although every input is finite: the merge overflows its output dtype; use smaller --lambda or --weights. "
       "Nothing was written");
}

void refuse_nonfinite_weights(const io::NamedTensors& tensors, const std::string& source, const std::string& remedy) {
  for (const auto& [name, t] : tensors)
    if (const auto bad = first_nonfinite(t))
      fail(source, ": tensor '", name, "' holds ", std::isnan(bad->second) ? "NaN" : "Inf", " (element ", bad->first, "): ",
           remedy);
}

void refuse_nonfinite(const io::NamedTensors& tensors, const std::string& source, const std::string& flag) {
  for (const auto& [name, t] : tensors) refuse_nonfinite(t, source, name, 0, flag);
}

}  // namespace lofi::merge
