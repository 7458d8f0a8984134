#include "lofi/merge/average.h"

namespace lofi::merge {

AverageResult average_checkpoints(const AverageOptions& options) {
  AverageOptions average = options;
  average.method = "average";
  return merge_checkpoints(average);
}

io::NamedTensors weighted_average(const std::vector<const io::NamedTensors*>& models, const std::vector<double>& weights) {
  return merge_in_memory(find_method("average"), models, weights);
}

void average_files(const std::vector<std::string>& inputs, const std::vector<double>& weights, const std::string& out) {
  AverageOptions options;
  options.inputs = inputs;
  options.weights = weights;
  options.out = out;
  average_checkpoints(options);
}

}  // namespace lofi::merge
