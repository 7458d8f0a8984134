// `lofi export`: a lofi checkpoint as a Hugging Face model directory. The checkpoint's
// "lofi.config" metadata gives the model; when its run started from a Hugging Face directory,
// that directory's config.json keys and tokenizer files are carried over.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lofi::family {

struct ExportOptions {
  std::string format = "hf";  // the one format so far: a Hugging Face directory
  std::string dtype;          // "F32", "F16", "BF16"; empty: F32
  int64_t shard_bytes = 0;    // > 0: shards of at most this size + model.safetensors.index.json
  bool allow_nonfinite = false;  // export weights holding NaN or Inf (else refused, naming the tensor)
};

// IN: a lofi .safetensors checkpoint, or a run directory (its merged.safetensors). OUT_DIR must
// not exist. Returns the files written.
std::vector<std::string> export_checkpoint(const std::string& in, const std::string& out_dir, const ExportOptions& options);

// For runs whose model.init is a Hugging Face directory: rewrites OUT_DIR (removing an older
// one) from the checkpoint IN, in F32.
void write_hf_output(const std::string& in, const std::string& out_dir);

}  // namespace lofi::family
