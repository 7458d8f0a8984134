#include "lofi/merge/nonfinite.h"

#include <cmath>

#include "lofi/error.h"

namespace lofi::merge {

void refuse_nonfinite(const torch::Tensor& values, const std::string& source, const std::string& name, int64_t offset,
                      const std::string& flag) {
  if (!values.is_floating_point() || values.numel() == 0) return;
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
