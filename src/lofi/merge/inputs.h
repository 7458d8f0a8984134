// What a merge reads: expanding run directories into their node finals, recognising Hugging Face
// model directories, and the checks that inputs can be merged at all (the same tensors, trained
// alike, one tokenizer).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "lofi/io/safetensors_set.h"

namespace lofi::merge {

// Run directories expand to RUN/node-*/final.safetensors; with the run's config.toml the nodes
// that should exist are known, so a missing one is named rather than silently absent. Files and
// weight directories stay as they are.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

// A Hugging Face model directory: weights (one file or shards) beside a config.json.
bool is_model_dir(const std::string& path);
// What such a directory holds beside its weights: config.json and io::hf_companion_files().
const std::vector<std::string>& model_dir_files();

// Each returns what is wrong, or "".
// SET (read from PATH) holds weights a merge can do arithmetic on: not FP8, not MXFP4-quantized
// (gpt-oss's published experts, X_blocks and X_scales), which are refused with what to do.
std::string unmergeable_tensors(const io::SafetensorsSet& set, const std::string& path);
// OTHER holds exactly FIRST's tensors (names, shapes and, with SAME_DTYPES, dtypes; float tensors
// may otherwise differ in precision, as a half-precision pretrained model and fp32 fine-tunes do).
std::string layout_mismatch(const io::SafetensorsSet& first, const io::SafetensorsSet& other, bool same_dtypes = true);
// OTHER was trained like FIRST as far as both say: the same pretrained start, steps and node count.
std::string provenance_mismatch(const io::SafetensorsSet& first, const io::SafetensorsSet& other);
// The settings that differ between two lofi.config texts, each given with the file it came from.
using ConfigChanges =
    std::function<std::vector<std::string>(const std::string&, const std::string&, const std::string&, const std::string&)>;
// OTHER was trained with FIRST's settings (their lofi.config, compared by CHANGES; unset: not compared).
std::string settings_mismatch(const io::SafetensorsSet& first, const io::SafetensorsSet& other, const ConfigChanges& changes);
// Model directories share their tokenizer files.
std::string tokenizer_mismatch(const std::vector<std::string>& model_dirs);

// Reads every model directory's config.json (failing, naming the file, on one that is not a JSON
// object) and returns why they differ as models (a key other than provenance: _name_or_path,
// transformers_version, torch_dtype, dtype), or "" when they agree. The merge's directory carries
// the first one's config: it must describe every input.
std::string config_mismatch(const std::vector<std::string>& model_dirs);

}  // namespace lofi::merge
