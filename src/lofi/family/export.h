// `lofi export`: a lofi checkpoint (or any model lofi reads) as a Hugging Face model directory.
// The checkpoint's "lofi.config" metadata gives the model; when its run started from a Hugging
// Face directory, that directory's config.json keys and tokenizer files are carried over.
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

// IN: a lofi .safetensors checkpoint, a run directory (its merged.safetensors), a PEFT adapter
// directory (folded into its base), or a Hugging Face model directory (rewritten in DTYPE, with
// gpt-oss's MXFP4 experts dequantized: the copy other tools and lofi's merges read). OUT_DIR must
// not exist. A full fine-tune's weights are streamed from the file tensor by tensor (no model is
// built, one tensor in memory at a time); a LoRA checkpoint's adapters are folded into a built
// model's layers, and a Hugging Face directory is read into a built model (in bf16 for DTYPE BF16).
// Returns the files written.
std::vector<std::string> export_checkpoint(const std::string& in, const std::string& out_dir, const ExportOptions& options);

// Hugging Face's own default shard size (save_pretrained's max_shard_size).
constexpr int64_t kHfShardBytes = 5'000'000'000;
// For runs whose model.init is a Hugging Face directory: rewrites OUT_DIR (removing an older
// one) from the checkpoint IN, in F32, streamed tensor by tensor: one model.safetensors when the
// weights fit SHARD_BYTES, else shards of at most that with model.safetensors.index.json.
void write_hf_output(const std::string& in, const std::string& out_dir, int64_t shard_bytes = kHfShardBytes);

}  // namespace lofi::family
