// LoRA adapters as files, in lofi's form and in PEFT's.
// - lofi's: one safetensors file of the adapter's tensors under the model's own parameter names
//   ("model.layers.0.self_attn.q_proj.lora_A.weight", and whole tensors of modules_to_save), its
//   LoraSpec as JSON in the metadata key "lofi.lora". A LoRA run's node finals and checkpoints
//   are such files.
// - PEFT's: a directory of adapter_config.json and adapter_model.safetensors whose names carry
//   PEFT's prefix ("base_model.model.<name>"), what PeftModel.save_pretrained writes and
//   PeftModel.from_pretrained reads.
// read_lora_adapter() takes either; PEFT variants lofi does not implement (DoRA, LoHa, LoKr,
// prompt tuning, ...) are refused by name.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/io/safetensors.h"

namespace lofi::io {

// What an adapter is, with PEFT's meanings (LoraConfig's fields).
struct LoraSpec {
  int64_t r = 8;
  double alpha = 8;     // lora_alpha
  bool rslora = false;  // use_rslora: scaling alpha / sqrt(r) instead of alpha / r
  double dropout = 0;   // lora_dropout
  std::vector<std::string> target_modules;   // names as PEFT matches them, or {"all-linear"}
  std::vector<std::string> modules_to_save;  // modules trained whole (a new head)
  bool fan_in_fan_out = false;               // GPT-2's Conv1D layers
  std::string base_model;                    // base_model_name_or_path
  std::string task_type;                     // "CAUSAL_LM", or empty

  double scaling() const;
  // PEFT's adapter_config.json keys.
  nlohmann::ordered_json to_json() const;
  // From adapter_config.json (or lofi's metadata), SOURCE naming it in errors.
  static LoraSpec from_json(const nlohmann::json& j, const std::string& source);
};

// The metadata keys of lofi's adapter files.
inline constexpr const char* kLoraSpecKey = "lofi.lora";
inline constexpr const char* kLoraBaseChecksumKey = "lofi.lora_base_xxh3";  // of the base's weights
// The suffixes of a layer's adapter factors: "<layer>.lora_A.weight" (r, in), "<layer>.lora_B.weight" (out, r).
inline constexpr const char* kLoraASuffix = ".lora_A.weight";
inline constexpr const char* kLoraBSuffix = ".lora_B.weight";
// PEFT's prefix of the tensor names in adapter_model.safetensors.
inline constexpr const char* kPeftPrefix = "base_model.model.";

struct LoraAdapter {
  LoraSpec spec;
  NamedTensors tensors;  // the model's own names, fp32 as stored
  Metadata metadata;     // of lofi's file (empty for a PEFT directory)
  std::string source;    // the path read
};

// Whether NAME is an adapter factor's (lora_A or lora_B), not a saved module's.
bool is_lora_factor(const std::string& name);
// PEFT's rule for a name in target_modules or modules_to_save: the whole name, or its last
// components ("self_attn.q_proj" and "q_proj" both match "model.layers.0.self_attn.q_proj").
bool peft_name_matches(const std::string& name, const std::string& pattern);
// The layers ADAPTER adapts ("model.layers.0.self_attn.q_proj"), in file order.
std::vector<std::string> adapted_layers(const LoraAdapter& adapter);

// PATH is a PEFT adapter directory, or a safetensors file carrying kLoraSpecKey.
bool is_lora_adapter(const std::string& path);
LoraAdapter read_lora_adapter(const std::string& path);
// PEFT's directory DIR (replacing an older one), built under a temporary name and renamed.
void write_peft_adapter(const std::string& dir, const LoraAdapter& adapter);
// lofi's file PATH, written atomically with the data checksum.
void write_lora_file(const std::string& path, const LoraAdapter& adapter);

// The XXH3-64 (16 hex digits) of a base model's weights as an adapter records it: each tensor's
// name and its values rounded to bf16 (then widened to fp32), in the given order, so a base held in
// bf16 and the same base held in fp32 agree.
std::string weights_checksum(const NamedTensors& weights);

// Comma-separated names ("q_proj, v_proj") as a list; empty text is an empty list.
std::vector<std::string> split_names(const std::string& text);

}  // namespace lofi::io
