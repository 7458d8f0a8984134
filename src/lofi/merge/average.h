// Weighted averages of checkpoints — lo-fi's one synchronisation point. Inputs are read in
// chunks of about a million elements and averaged on several threads, so peak memory is a few
// chunks, not N models. Inputs must agree on every tensor's name, shape and dtype. Half
// precision accumulates in fp32, fp32 in fp64 (so the average of identical inputs is exact).
// Outputs are written under a temporary name and renamed: an interrupted merge leaves nothing.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lofi/io/safetensors.h"

namespace lofi::merge {

struct AverageOptions {
  std::vector<std::string> inputs;  // safetensors files, sharded sets (an *.index.json, or a directory
                                    // with model.safetensors[.index.json]), or run directories
                                    // (their node finals)
  std::vector<double> weights;      // one per (expanded) input; empty: uniform; normalised
  std::string out;                  // a .safetensors file, or a directory when shard_bytes > 0 or when
                                    // every input is a Hugging Face model directory (then one too:
                                    // weights + the first input's config.json and tokenizer files)
  std::string dtype;                // output dtype ("F32", "F16", "BF16", "F64"); empty: as input
  int64_t shard_bytes = 0;          // > 0: Hugging Face shards of at most this size + index.json
  int64_t min_inputs = 0;           // > 0: skip missing or corrupt inputs, fail under this many
  int threads = 0;                  // worker threads; 0: all cores
  bool checksums = true;            // XXH3 of every input in the provenance (one extra read)
  bool allow_nonfinite = false;     // average inputs holding NaN or Inf (else refused, naming them)
  bool force = false;               // average inputs whose metadata says they were trained apart
                                    // (another pretrained start, step count, node count or settings)
  // The training settings that differ between two inputs' lofi.config texts ("key = a -> b"),
  // given by the layer that knows the config (train/); unset: settings are not compared.
  std::function<std::vector<std::string>(const std::string&, const std::string&)> config_changes;
  io::Metadata metadata;            // added to the output's metadata
};

struct AverageResult {
  std::vector<std::string> used;     // inputs averaged, in order
  std::vector<std::string> skipped;  // "PATH: reason" for each input left out
  std::vector<std::string> outputs;  // files written
};

// Run directories expand to RUN/node-*/final.safetensors; with the run's config.toml the nodes
// that should exist are known, so a missing one is named rather than silently absent.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

AverageResult average_checkpoints(const AverageOptions& options);

// In memory: sum_i w_i MODELS[i] / sum_i w_i per float tensor (fp64 accumulation), integer tensors
// from the first model. For soups and interpolation, where models are small enough to hold.
io::NamedTensors weighted_average(const std::vector<const io::NamedTensors*>& models, const std::vector<double>& weights);

// Uniform or weighted average of INPUTS into OUT with default options.
void average_files(const std::vector<std::string>& inputs, const std::vector<double>& weights,
                   const std::string& out);

}  // namespace lofi::merge
