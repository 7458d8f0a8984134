// Hugging Face model directories in and out: config.json <-> LmConfig for every architecture
// (model_type = arch name; the keys each one maps are in its archs/ file), weights read from
// model.safetensors or its shards with or without the base-model prefix the hub files use, and a
// whole directory written that transformers' from_pretrained loads unchanged. Settings lofi
// cannot honour are errors naming config.json, the key and the value.
#pragma once
#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <vector>

#include "lofi/io/safetensors.h"
#include "lofi/model/causal_lm.h"

namespace lofi::model {

// PATH is a directory holding config.json.
bool is_hf_model_dir(const std::string& path);

// The model config.json describes; SOURCE names it in errors. Keys it lacks take transformers'
// defaults for the model type.
LmConfig lm_config_from_hf(const nlohmann::json& config, const std::string& source);
LmConfig read_hf_config(const std::string& dir);  // DIR/config.json

// config.json for CONFIG: the model type's own keys, architectures, torch_dtype and the tied
// head. Keys of BASE (the config.json the model came from, if any: token ids, prefix, ...) are
// kept where lofi does not set them.
nlohmann::ordered_json hf_config_json(const LmConfig& config, const std::string& torch_dtype,
                                      const nlohmann::json& base = nlohmann::json::object());

// Copies the weights at PATH (a .safetensors file, an index.json or a directory; names with or
// without the architecture's base prefix, "model." / "transformer."; or a vision-language
// checkpoint's language model, model/hf_wrapped.h) into MODEL. An untied head
// loads lm_head.weight; a tied one checks that a stored lm_head.weight equals the token
// embedding. Tensors the architecture skips (GPT-2's mask buffers) are skipped. Anything else
// missing, extra or misshapen is an error naming the tensor. Parameters on the meta device are
// left to DEFERRED (model/deferred_weights.h), which keeps the files open for them.
void load_hf_weights(CausalLmImpl& model, const std::string& path, DeferredWeights* deferred = nullptr);

struct HfExportOptions {
  std::string dtype;          // "F32", "F16", "BF16"; empty: F32
  int64_t shard_bytes = 0;    // > 0: shards of at most this size + model.safetensors.index.json
  std::string source_dir;     // the Hugging Face directory the model came from: its config.json
                              // keys and io::hf_companion_files() are carried over; empty: none
};

// Writes MODEL as a new Hugging Face directory OUT_DIR (config.json, model.safetensors or shards,
// tokenizer files), built under a temporary name and renamed into place. Returns the files written.
// When the source directory is a vision-language checkpoint around MODEL (model/hf_wrapped.h),
// OUT_DIR is one too: MODEL under the source's names, the source's other tensors and config keys.
std::vector<std::string> export_hf(const CausalLmImpl& model, const std::string& out_dir, const HfExportOptions& options);
// The same for the weights of a model of CONFIG already in a file (a checkpoint of a full fine-tune,
// whose tensors carry the Hugging Face names), streamed tensor by tensor from WEIGHTS to the
// output: no model is built and no more than one tensor is in memory at a time. CHECK (optional)
// sees each tensor before it is written (and may throw: nothing is left behind).
std::vector<std::string> export_hf(const LmConfig& config, const io::SafetensorsFile& weights, const std::string& out_dir,
                                   const HfExportOptions& options,
                                   const std::function<void(const std::string& name, const torch::Tensor&)>& check = {});

}  // namespace lofi::model
