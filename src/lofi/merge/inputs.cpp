#include "lofi/merge/inputs.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "lofi/error.h"
#include "lofi/io/hf_dir_files.h"
#include "lofi/io/safetensors.h"
#include "lofi/run/run_dir.h"
#include "lofi/strings.h"

namespace lofi::merge {
namespace fs = std::filesystem;
namespace {

// A directory of Hugging Face weights (one file or shards), as opposed to a run directory.
bool is_weights_dir(const fs::path& dir) {
  return fs::exists(dir / "model.safetensors") || fs::exists(dir / "model.safetensors.index.json");
}

}  // namespace

std::string unmergeable_tensors(const io::SafetensorsSet& set, const std::string& path) {
  for (const auto& t : set.tensors()) {
    const io::TensorEntry& e = *t.entry;
    // FP8 weights have no arithmetic here (PyTorch refuses their promotion and isfinite).
    if (c10::isFloat8Type(io::dtype_from_safetensors(e.dtype, path)))
      return cat(path, ": tensor '", e.name, "' is ", e.dtype,
                 ": lofi merges F64, F32, F16 and BF16 weights; convert the file to one of them first");
    // Half of an MXFP4 pair is enough to tell (one shard of a sharded checkpoint may hold the other).
    if (e.dtype == "U8" && (ends_with(e.name, "_blocks") || ends_with(e.name, "_scales"))) {
      const std::string dir = fs::is_directory(path) ? path : fs::path(path).parent_path().string();  // the model's directory
      return cat(path, ": tensor '", e.name, "' is an MXFP4-quantized weight: lofi merges F64, F32, F16 and BF16 weights; ",
                 "write a dequantized copy of the model first (lofi export --format hf --dtype BF16 ", dir.empty() ? "." : dir,
                 " OUT_DIR) and merge that");
    }
  }
  return "";
}

std::string layout_mismatch(const io::SafetensorsSet& first, const io::SafetensorsSet& other, bool same_dtypes) {
  for (const auto& t : first.tensors()) {
    const io::TensorEntry& e = *t.entry;
    const auto* found = other.find(e.name);
    if (!found) return cat("tensor '", e.name, "' is in ", first.source(), " but not in ", other.source());
    const io::TensorEntry* o = found->entry;
    const bool both_float = torch::isFloatingType(io::dtype_from_safetensors(e.dtype, first.source())) &&
                            torch::isFloatingType(io::dtype_from_safetensors(o->dtype, other.source()));
    if (o->shape != e.shape || (o->dtype != e.dtype && (same_dtypes || !both_float)))
      return cat("tensor '", e.name, "' is ", e.dtype, " ", torch::IntArrayRef(e.shape), " in ", first.source(), " but ",
                 o->dtype, " ", torch::IntArrayRef(o->shape), " in ", other.source());
  }
  for (const auto& o : other.tensors())
    if (!first.find(o.entry->name)) return cat("tensor '", o.entry->name, "' is in ", other.source(), " but not in ", first.source());
  return "";
}

std::string provenance_mismatch(const io::SafetensorsSet& first, const io::SafetensorsSet& other) {
  for (const char* key : {"lofi.init_xxh3", "lofi.step", "lofi.nodes"}) {
    auto a = first.metadata().find(key), b = other.metadata().find(key);
    if (a != first.metadata().end() && b != other.metadata().end() && a->second != b->second)
      return cat(first.source(), " has ", key, " = ", a->second, " but ", other.source(), " has ", b->second);
  }
  return "";
}

std::string settings_mismatch(const io::SafetensorsSet& first, const io::SafetensorsSet& other,
                              const ConfigChanges& changes) {
  if (!changes) return "";
  auto a = first.metadata().find("lofi.config"), b = other.metadata().find("lofi.config");
  if (a == first.metadata().end() || b == other.metadata().end()) return "";
  const std::vector<std::string> differ = changes(a->second, first.source(), b->second, other.source());
  if (differ.empty()) return "";
  std::string list;
  for (const auto& d : differ) list += (list.empty() ? "" : ", ") + d;
  return cat(other.source(), " was trained with other settings than ", first.source(), ": ", list);
}

const std::vector<std::string>& model_dir_files() {
  static const std::vector<std::string> files = [] {
    std::vector<std::string> all{"config.json"};
    all.insert(all.end(), io::hf_companion_files().begin(), io::hf_companion_files().end());
    return all;
  }();
  return files;
}

bool is_model_dir(const std::string& path) { return fs::is_directory(path) && is_weights_dir(path) && fs::exists(fs::path(path) / "config.json"); }

std::string tokenizer_mismatch(const std::vector<std::string>& inputs) {
  for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"})
    for (size_t i = 1; i < inputs.size(); ++i) {
      const fs::path a = fs::path(inputs[0]) / name, b = fs::path(inputs[i]) / name;
      if (fs::exists(a) != fs::exists(b) || (fs::exists(a) && io::read_text_file(a.string()) != io::read_text_file(b.string())))
        return cat(name, " differs between ", inputs[0], " and ", inputs[i], ": the models do not share a tokenizer");
    }
  return "";
}

std::string config_mismatch(const std::vector<std::string>& inputs) {
  static const std::vector<std::string> provenance = {"_name_or_path", "transformers_version", "torch_dtype", "dtype"};
  auto read = [](const std::string& dir) {
    const std::string path = (fs::path(dir) / "config.json").string();
    nlohmann::json config = nlohmann::json::parse(io::read_text_file(path), nullptr, /*allow_exceptions=*/false);
    if (!config.is_object()) fail(path, ": not a JSON object; a model directory's config.json describes its model");
    for (const auto& key : provenance) config.erase(key);
    return config;
  };
  const nlohmann::json first = read(inputs[0]);
  for (size_t i = 1; i < inputs.size(); ++i) {
    const nlohmann::json other = read(inputs[i]);
    if (other == first) continue;
    for (const auto& [key, value] : first.items())
      if (!other.contains(key) || other[key] != value)
        return cat("config.json differs between ", inputs[0], " and ", inputs[i], " at \"", key, "\" (", value.dump(), " and ",
                   other.contains(key) ? other[key].dump() : std::string("absent"), "): they are not the same model");
    for (const auto& [key, value] : other.items())
      if (!first.contains(key))
        return cat("config.json differs between ", inputs[0], " and ", inputs[i], " at \"", key, "\" (absent and ",
                   value.dump(), "): they are not the same model");
  }
  return "";
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const auto& input : inputs) {
    if (!fs::is_directory(input) || is_weights_dir(input)) {
      out.push_back(input);
      continue;
    }
    // A run's nodes: those it has, and those its config says it has (a failed one is named missing).
    const run::RunDir run(input);
    const std::vector<int64_t> ids = run.expected_node_ids();
    if (ids.empty()) fail(input, ": a directory with no node-*/ subdirectories and no config.toml; not a run directory");
    for (int64_t k : ids) out.push_back(run.node(k).final_weights());
  }
  return out;
}

}  // namespace lofi::merge
