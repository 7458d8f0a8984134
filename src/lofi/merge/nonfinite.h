// Weights holding NaN or Inf come from a diverged run; merging or exporting them spreads the
// damage silently, so merge, soup and export refuse them unless the user says otherwise.
#pragma once
#include <torch/torch.h>

#include <string>

#include "lofi/io/safetensors.h"

namespace lofi::merge {

// Throws naming SOURCE, the tensor NAME and the first bad element (OFFSET + its index) when the
// float tensor VALUES holds NaN or Inf; FLAG is the option that would allow it.
void refuse_nonfinite(const torch::Tensor& values, const std::string& source, const std::string& name, int64_t offset,
                      const std::string& flag);
// The same over every float tensor of TENSORS.
void refuse_nonfinite(const io::NamedTensors& tensors, const std::string& source, const std::string& flag);

}  // namespace lofi::merge
