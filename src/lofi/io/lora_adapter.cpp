#include "lofi/io/lora_adapter.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <algorithm>
#include <cctype>
#include <filesystem>

#include <xxhash.h>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/earlier_output.h"
#include "lofi/io/hf_wrapped_names.h"
#include "lofi/io/safetensors_set.h"
#include "lofi/strings.h"

namespace lofi::io {

namespace fs = std::filesystem;

double LoraSpec::scaling() const { return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r); }

nlohmann::ordered_json LoraSpec::to_json() const {
  nlohmann::ordered_json j;
  j["peft_type"] = "LORA";
  if (!task_type.empty()) j["task_type"] = task_type;
  j["base_model_name_or_path"] = base_model.empty() ? nlohmann::json(nullptr) : nlohmann::json(base_model);
  j["r"] = r;
  j["lora_alpha"] = alpha;
  j["lora_dropout"] = dropout;
  j["use_rslora"] = rslora;
  j["target_modules"] = target_modules.size() == 1 && target_modules[0] == "all-linear" ? nlohmann::json("all-linear")
                                                                                        : nlohmann::json(target_modules);
  j["modules_to_save"] = modules_to_save.empty() ? nlohmann::json(nullptr) : nlohmann::json(modules_to_save);
  j["fan_in_fan_out"] = fan_in_fan_out;
  j["bias"] = "none";
  j["use_dora"] = false;
  j["init_lora_weights"] = true;
  j["inference_mode"] = true;
  return j;
}

namespace {

// A key PEFT may leave null or absent; TYPE-checked, refused naming SOURCE and the key.
template <typename T>
T value_or(const nlohmann::json& j, const char* key, T fallback, const std::string& source, const char* expected) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(source, ": key '", key, "' must be ", expected, ", found ", j[key].dump());
  }
}

std::vector<std::string> name_list(const nlohmann::json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return {};
  if (j[key].is_string()) return {j[key].get<std::string>()};
  return value_or<std::vector<std::string>>(j, key, {}, source, "a list of module names");
}

}  // namespace

LoraSpec LoraSpec::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail(source, ": expected a JSON object (PEFT's adapter_config.json), found ", j.type_name());
  const std::string type = value_or<std::string>(j, "peft_type", "LORA", source, "a string");
  if (type != "LORA")
    fail(source, ": peft_type \"", type, "\" is not supported: lofi trains, reads and merges LoRA adapters only (not LoHa, ",
         "LoKr, IA3, prompt or prefix tuning); merge it into its base with PEFT's merge_and_unload and give lofi the result");
  if (value_or<bool>(j, "use_dora", false, source, "true or false"))
    fail(source, ": use_dora = true (DoRA) is not supported: lofi's adapters are plain LoRA; merge it with PEFT's ",
         "merge_and_unload and give lofi the merged model");
  for (const char* key : {"rank_pattern", "alpha_pattern"})
    if (j.contains(key) && !j[key].is_null() && !j[key].empty())
      fail(source, ": ", key, " is set: per-module ranks or alphas are not supported; lofi needs one r and lora_alpha for every module");
  for (const char* key : {"layers_to_transform", "use_qalora", "lora_bias", "layer_replication", "trainable_token_indices",
                          "target_parameters", "use_bdlora"})
    // Unset: absent, null, false, or an empty list (PEFT writes target_parameters = [] for some models).
    if (j.contains(key) && !j[key].is_null() && j[key] != false && !(j[key].is_array() && j[key].empty()))
      fail(source, ": ", key, " = ", j[key].dump(), " is not supported by lofi's LoRA");
  if (const std::string bias = value_or<std::string>(j, "bias", "none", source, "a string"); bias != "none")
    fail(source, ": bias = \"", bias, "\" is not supported: lofi's adapters train no biases (bias = \"none\")");
  LoraSpec s;
  s.r = value_or<int64_t>(j, "r", 8, source, "an integer");
  if (s.r <= 0) fail(source, ": r must be >= 1, found ", s.r);
  s.alpha = value_or<double>(j, "lora_alpha", 8.0, source, "a number");
  s.rslora = value_or<bool>(j, "use_rslora", false, source, "true or false");
  s.dropout = value_or<double>(j, "lora_dropout", 0.0, source, "a number");
  s.target_modules = name_list(j, "target_modules", source);
  s.modules_to_save = name_list(j, "modules_to_save", source);
  s.fan_in_fan_out = value_or<bool>(j, "fan_in_fan_out", false, source, "true or false");
  s.base_model = value_or<std::string>(j, "base_model_name_or_path", "", source, "a string");
  s.task_type = value_or<std::string>(j, "task_type", "", source, "a string");
  if (!std::isfinite(s.alpha) || !std::isfinite(s.dropout))
    fail(source, ": lora_alpha and lora_dropout must be finite numbers");
  return s;
}

bool is_lora_factor(const std::string& name) { return ends_with(name, kLoraASuffix) || ends_with(name, kLoraBSuffix); }

bool peft_name_matches(const std::string& name, const std::string& pattern) {
  return name == pattern || ends_with(name, "." + pattern);
}

namespace {

// Whether BASE (an adapter's base_model_name_or_path) is a local vision-language checkpoint: its
// weights name a language model inside (io/hf_wrapped_names.h).
bool base_wraps_a_language_model(const std::string& base) {
  std::error_code ec;
  if (base.empty() || !fs::is_directory(base, ec)) return false;
  if (!fs::exists(fs::path(base) / "model.safetensors", ec) && !fs::exists(fs::path(base) / "model.safetensors.index.json", ec))
    return false;
  const SafetensorsSet weights(base);
  std::vector<std::string> names;
  for (const auto& t : weights.tensors()) names.push_back(t.entry->name);
  return wrapped_names(names) != WrappedNames::kNone;
}

// A target_modules entry that is a name, not one of PEFT's regular expressions (a string such as
// ".*(q|v)_proj", matched whole).
bool plain_name(const std::string& target) {
  return std::all_of(target.begin(), target.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'; });
}

// The factors must be what the config says, as PEFT's loader holds them: every adapted layer an A
// (r, in) and a B (out, r) with the config's r, on a layer target_modules names. An adapter whose
// files disagree is refused by tensor, never applied at another scale or to other layers.
void check_factors(const LoraAdapter& a) {
  std::map<std::string, int> layers;  // layer -> 1 (A seen) | 2 (B seen)
  const bool named_targets = !a.spec.target_modules.empty() && a.spec.target_modules != std::vector<std::string>{"all-linear"} &&
                             std::all_of(a.spec.target_modules.begin(), a.spec.target_modules.end(), plain_name);
  for (const auto& [name, t] : a.tensors) {
    const bool is_a = ends_with(name, kLoraASuffix), is_b = ends_with(name, kLoraBSuffix);
    if (!is_a && !is_b) continue;
    const std::string layer = name.substr(0, name.size() - std::string(is_a ? kLoraASuffix : kLoraBSuffix).size());
    if (t.dim() != 2) fail(a.source, ": tensor '", name, "' has shape ", t.sizes(), "; a LoRA factor is a matrix");
    const int64_t rank = is_a ? t.size(0) : t.size(1);
    if (rank != a.spec.r)
      fail(a.source, ": tensor '", name, "' is of rank ", rank, " (shape ", t.sizes(), ") but its config says r = ", a.spec.r,
           "; the adapter's config and weights disagree (PEFT refuses it too)");
    if (named_targets && std::none_of(a.spec.target_modules.begin(), a.spec.target_modules.end(),
                                      [&](const std::string& target) { return peft_name_matches(layer, target); })) {
      std::string targets;
      for (const auto& target : a.spec.target_modules) targets += (targets.empty() ? "" : ", ") + target;
      fail(a.source, ": tensor '", name, "' adapts layer '", layer, "', which its config's target_modules (", targets,
           ") does not name; the adapter's config and weights disagree");
    }
    layers[layer] |= is_a ? 1 : 2;
  }
  if (layers.empty()) fail(a.source, ": holds no LoRA factors (no tensor named *", kLoraASuffix, "): an empty adapter");
  for (const auto& [layer, seen] : layers)
    if (seen != 3)
      fail(a.source, ": layer '", layer, "' has ", seen == 1 ? "lora_A" : "lora_B", " but no ", seen == 1 ? "lora_B" : "lora_A",
           " (", layer, seen == 1 ? kLoraBSuffix : kLoraASuffix, " is missing)");
}

}  // namespace

std::vector<std::string> adapted_layers(const LoraAdapter& adapter) {
  const size_t n = std::string(kLoraASuffix).size();
  std::vector<std::string> layers;
  for (const auto& [name, t] : adapter.tensors)
    if (ends_with(name, kLoraASuffix)) layers.push_back(name.substr(0, name.size() - n));
  return layers;
}

bool is_lora_adapter(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return fs::exists(fs::path(path) / "adapter_config.json", ec);
  if (!fs::is_regular_file(path, ec) || !ends_with(path, ".safetensors")) return false;
  try {
    return SafetensorsFile(path).metadata().count(kLoraSpecKey) > 0;
  } catch (const Error&) {
    return false;  // not readable as safetensors: not an adapter; the caller's own read says why
  }
}

LoraAdapter read_lora_adapter(const std::string& path) {
  LoraAdapter a;
  a.source = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string config = (fs::path(path) / "adapter_config.json").string();
    if (!fs::exists(config)) fail(path, ": not a PEFT adapter directory (no adapter_config.json)");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(config));
    } catch (const nlohmann::json::exception& e) {
      fail(config, ": not valid JSON (", e.what(), ")");
    }
    a.spec = LoraSpec::from_json(j, config);
    const std::string weights = (fs::path(path) / "adapter_model.safetensors").string();
    if (!fs::exists(weights))
      fail(path, ": no adapter_model.safetensors (lofi reads PEFT's safetensors adapters; convert a .bin with PEFT's ",
           "save_pretrained(safe_serialization=True))");
    SafetensorsFile file(weights);
    for (const auto& e : file.entries()) {
      if (!starts_with(e.name, kPeftPrefix))
        fail(weights, ": tensor '", e.name, "' lacks PEFT's prefix \"", kPeftPrefix, "\"");
      a.tensors.emplace_back(e.name.substr(std::string(kPeftPrefix).size()), file.load(e));
    }
    // An adapter of a vision-language model's language model (io/hf_wrapped_names.h): its layers
    // under the language model's own names, as lofi builds it.
    std::vector<std::string> names;
    for (const auto& [name, t] : a.tensors) names.push_back(name);
    if (const WrappedNames spelling = wrapped_names(names); spelling != WrappedNames::kNone)
      for (auto& [name, t] : a.tensors) {
        std::string own = language_model_name(name, spelling);
        if (own.empty())
          fail(weights, ": tensor '", kPeftPrefix, name, "' adapts a module outside the language model (the vision tower's or ",
               "the projector's); lofi runs, trains and merges the language model of a vision-language checkpoint only: train ",
               "the adapter on the language model (PEFT's exclude_modules), or merge it into its base with merge_and_unload");
        name = std::move(own);
      }
    check_factors(a);
    return a;
  }
  SafetensorsFile file(path);
  file.verify_data_checksum();  // a node's final, say, damaged since it was written
  auto it = file.metadata().find(kLoraSpecKey);
  if (it == file.metadata().end())
    fail(path, ": not a LoRA adapter (no \"", kLoraSpecKey, "\" in its metadata, and not a PEFT adapter directory)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": metadata \"", kLoraSpecKey, "\" is not valid JSON (", e.what(), ")");
  }
  a.spec = LoraSpec::from_json(j, path + " (metadata " + kLoraSpecKey + ")");
  a.metadata = file.metadata();
  a.tensors = file.load_all();
  check_factors(a);
  return a;
}

void write_peft_adapter(const std::string& dir, const LoraAdapter& adapter) {
  remove_earlier_output(dir, "adapter_config.json", "PEFT adapter directory");
  StagedDir staged(dir);
  // On a vision-language base, the layers are named as PEFT names them there today (transformers
  // 5's module names), and PEFT is kept off the vision tower and projector, whose modules
  // target_modules' names would match too.
  const bool wrapped = base_wraps_a_language_model(adapter.spec.base_model);
  NamedTensors prefixed;
  for (const auto& [name, t] : adapter.tensors)
    prefixed.emplace_back(kPeftPrefix + (wrapped ? wrapped_name(name, WrappedNames::kModelLanguageModel) : name), t);
  Metadata meta{{"format", "pt"}};
  if (auto it = adapter.metadata.find(kLoraBaseChecksumKey); it != adapter.metadata.end()) meta.insert(*it);
  save_safetensors(staged.path() + "/adapter_model.safetensors", prefixed, meta);
  nlohmann::ordered_json config = adapter.spec.to_json();
  if (wrapped) config["exclude_modules"] = "(?!.*language_model\\.).*";  // matched whole: every module outside it
  write_file_atomic(staged.path() + "/adapter_config.json", config.dump(2) + "\n");
  staged.commit();
}

void write_lora_file(const std::string& path, const LoraAdapter& adapter) {
  Metadata meta = adapter.metadata;
  meta[kLoraSpecKey] = adapter.spec.to_json().dump();
  save_safetensors(path, adapter.tensors, meta, /*checksum=*/true);
}

std::string weights_checksum(const NamedTensors& weights) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (const auto& [name, t] : weights) {
    XXH3_64bits_update(state, name.data(), name.size() + 1);  // the terminating NUL separates names
    const torch::Tensor f = t.detach().to(torch::kCPU).to(torch::kBFloat16).to(torch::kFloat).contiguous();
    XXH3_64bits_update(state, f.data_ptr(), static_cast<size_t>(f.numel()) * sizeof(float));
  }
  const unsigned long long h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", h);
  return hex;
}

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    const size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    if (a != std::string::npos) out.push_back(item.substr(a, b - a + 1));
    start = end + 1;
  }
  return out;
}

}  // namespace lofi::io
