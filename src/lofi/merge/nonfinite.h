// Weights holding NaN or Inf come from a diverged run; merging or exporting them spreads the
// damage silently, so merge, soup and export refuse them unless the user says otherwise.
#pragma once
#include <torch/torch.h>

#include <optional>
#include <string>
#include <utility>

#include "lofi/io/safetensors.h"

namespace lofi::merge {

// The first NaN or Inf of the float tensor VALUES: its flat index and value; nullopt when all are
// finite (or VALUES is not floating point).
std::optional<std::pair<int64_t, double>> first_nonfinite(const torch::Tensor& values);

// Throws naming WHAT (the merge) and the merged tensor NAME when its values at OFFSET hold NaN or
// Inf: the merge itself overflowed (its inputs were checked).
void refuse_nonfinite_output(const torch::Tensor& values, const std::string& what, const std::string& name, int64_t offset);

// Throws naming SOURCE, the tensor NAME and the first bad element (OFFSET + its index) when the
// float tensor VALUES holds NaN or Inf; FLAG is the option that would allow it.
void refuse_nonfinite(const torch::Tensor& values, const std::string& source, const std::string& name, int64_t offset,
                      const std::string& flag);
// The same over every float tensor of TENSORS.
void refuse_nonfinite(const io::NamedTensors& tensors, const std::string& source, const std::string& flag);

// Throws naming SOURCE, the first tensor of TENSORS holding NaN or Inf and its first bad element,
// followed by REMEDY (what the user can do).
void refuse_nonfinite_weights(const io::NamedTensors& tensors, const std::string& source, const std::string& remedy);

}  // namespace lofi::merge
