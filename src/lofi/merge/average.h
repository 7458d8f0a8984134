// Weighted averages of checkpoints, streamed a tensor at a time from memory-mapped inputs, so
// peak memory is a few tensors, not N models. Inputs must agree on every tensor's name, shape
// and dtype; the output keeps the dtype and is written atomically.
#pragma once
#include <string>
#include <vector>

namespace lofi::merge {

// Averages INPUTS into OUT with WEIGHTS (empty: uniform), normalised to sum to 1.
// Float tensors are accumulated in float64; integer tensors must be equal in every input.
void average_files(const std::vector<std::string>& inputs, const std::vector<double>& weights,
                   const std::string& out);

}  // namespace lofi::merge
