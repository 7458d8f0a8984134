// The merge engine's first step (merge/engine.h): what a merge of checkpoints on disk will read
// and write, with every check done before any tensor is merged.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "lofi/io/safetensors_set.h"
#include "lofi/merge/engine.h"
#include "lofi/merge/method.h"

namespace lofi::merge {

struct MergePlan {
  const Method* method = nullptr;
  std::string what;                                      // the command, for messages
  std::vector<std::unique_ptr<io::SafetensorsSet>> files;  // the usable inputs, in order
  std::vector<double> weights;                           // one per file, as given
  double total = 0;                                      // their sum
  std::unique_ptr<io::SafetensorsSet> base;              // for methods that need one
  std::vector<std::string> used;                         // the files' paths
  std::vector<std::string> skipped;                      // "PATH: reason" for each input left out
  std::vector<io::TensorEntry> layout;                   // the output's tensors, in the --dtype asked
  bool dir_out = false;  // a Hugging Face model directory: weights beside the first input's config

  const io::SafetensorsSet& first() const { return *files[0]; }
};

// Resolves OPTIONS' inputs, opens and checks them (and the base), and lays out the output;
// fails, naming the problem, on anything that would stop the merge.
MergePlan plan_merge(const MergeOptions& options);

}  // namespace lofi::merge
