// The streaming merge engine: every merge of checkpoints on disk (lo-fi's average, lofi merge's
// methods) goes through it. It opens and checks the inputs (files, Hugging Face shard sets and
// directories, run directories), records provenance, cuts tensors into chunks of about a million
// elements (or hands a method whole tensors when it needs them), runs the method on several
// threads and writes the results in order under a temporary name, renamed at the end: peak memory
// is a few chunks per thread, not N models, and an interrupted merge leaves nothing.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lofi/io/safetensors.h"
#include "lofi/merge/inputs.h"
#include "lofi/merge/method.h"

namespace lofi::merge {

struct MergeOptions {
  std::vector<std::string> inputs;  // safetensors files, sharded sets (an *.index.json, or a directory
                                    // with model.safetensors[.index.json]), or run directories
                                    // (their node finals)
  std::vector<double> weights;      // one per (expanded) input; empty: 1 each
  std::string method = "average";   // a registered method (method_names())
  MethodParams params;
  std::string base;                 // the model the inputs were fine-tuned from, for methods that need it
  std::string out;                  // a .safetensors file, or a directory when shard_bytes > 0 or when
                                    // every input is a Hugging Face model directory (then one too:
                                    // weights + the first input's config.json and tokenizer files)
  std::string dtype;                // output dtype ("F32", "F16", "BF16", "F64"); empty: as input
  int64_t shard_bytes = 0;          // > 0: Hugging Face shards of at most this size + index.json
  int64_t min_inputs = 0;           // > 0: skip missing or corrupt inputs, fail under this many
  int threads = 0;                  // worker threads; 0: all cores
  bool checksums = true;            // XXH3 of every input in the provenance (one extra read)
  bool allow_nonfinite = false;     // merge inputs holding NaN or Inf (else refused, naming them)
  bool force = false;               // merge inputs whose metadata says they were trained apart
                                    // (another pretrained start, step count, node count or settings)
  // The training settings that differ between two inputs' lofi.config texts ("key = a -> b"),
  // given by the layer that knows the config (train/); unset: settings are not compared.
  ConfigChanges config_changes;
  io::Metadata metadata;            // added to the output's metadata
};

struct MergeResult {
  std::vector<std::string> used;     // inputs merged, in order
  std::vector<std::string> skipped;  // "PATH: reason" for each input left out
  std::vector<std::string> outputs;  // files written
};

MergeResult merge_checkpoints(const MergeOptions& options);

// In memory, for soups and interpolation, where models are small enough to hold: METHOD over
// MODELS (and BASE, for methods that need one) tensor by tensor; integer tensors from the first.
io::NamedTensors merge_in_memory(const Method& method, const std::vector<const io::NamedTensors*>& models,
                                 const std::vector<double>& weights, const MethodParams& params = {},
                                 const io::NamedTensors* base = nullptr);

}  // namespace lofi::merge
