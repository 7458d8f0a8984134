// Weighted averages of checkpoints — lo-fi's one synchronisation point: the merge engine
// (engine.h) with the `average` method. Inputs must agree on every tensor's name, shape and dtype.
// Half precision accumulates in fp32, fp32 in fp64 (so the average of identical inputs is exact).
#pragma once
#include <string>
#include <vector>

#include "lofi/merge/engine.h"

namespace lofi::merge {

using AverageOptions = MergeOptions;  // method "average"
using AverageResult = MergeResult;

AverageResult average_checkpoints(const AverageOptions& options);

// In memory: sum_i w_i MODELS[i] / sum_i w_i per float tensor, integer tensors from the first model.
io::NamedTensors weighted_average(const std::vector<const io::NamedTensors*>& models, const std::vector<double>& weights);

// Uniform or weighted average of INPUTS into OUT with default options.
void average_files(const std::vector<std::string>& inputs, const std::vector<double>& weights,
                   const std::string& out);

}  // namespace lofi::merge
