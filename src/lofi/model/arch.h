// Causal-LM architectures: everything that differs between OPT, GPT-2, Llama, Qwen2, Mistral, ...
// in one place per architecture. Each is one file under archs/ with a LOFI_LM_ARCH line; the build
// registers every file there, so adding an architecture adds its files (its modules, if no
// existing ones fit, and its archs/ file) and edits none of the code that trains, merges,
// evaluates or exports it.
#pragma once
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/model/causal_lm.h"
#include "lofi/model/hf_keys.h"
#include "lofi/registry.h"

namespace lofi::model {

// A vision-language model transformers builds around an architecture's language model:
// config.json's model_type ("gemma3", the language model's config under its text_config) and
// architectures entry ("Gemma3ForConditionalGeneration"). See model/hf_wrapped.h.
struct HfWrapper {
  std::string model_type;
  std::string hf_class;
};

class LmArch {
 public:
  virtual ~LmArch() = default;
  // model.arch, and config.json's model_type: "llama".
  virtual std::string name() const = 0;
  // config.json's architectures entry: "LlamaForCausalLM".
  virtual std::string hf_class() const = 0;
  // The modules, with unset (not yet initialised) weights; C is checked.
  virtual CausalLm make(const LmConfig& c) const = 0;

  // config.json keys that map one to one onto LmConfig fields, with transformers' defaults.
  virtual std::vector<HfKey> hf_keys() const = 0;
  // What hf_keys cannot say: derived values, renamed activations, settings lofi refuses by name.
  // Runs after the table has been read.
  virtual void read_hf(const HfKeys&, LmConfig&) const {}
  // The other half: keys written beside the table's (token ids defaults, fixed settings).
  virtual void write_hf(const LmConfig&, nlohmann::ordered_json&) const {}
  // Settings of C this architecture cannot build, beyond the common checks; fails naming SOURCE.
  virtual void check(const LmConfig&, const std::string&) const {}

  // The prefix of the base model inside the LM-head model ("model.", "transformer."): hub files
  // of the base model omit it.
  virtual std::string base_prefix() const = 0;
  // Tensors some checkpoints carry that are not weights (GPT-2's causal-mask buffers).
  virtual bool skipped_tensor(const std::string&) const { return false; }
  // The vision-language models around this one whose checkpoints lofi reads: it trains their
  // language model and writes it back with the rest (vision tower, projector) as it was.
  virtual std::vector<HfWrapper> hf_wrappers() const { return {}; }
};

using LmArchRegistry = Registry<LmArch>;

// Fails, naming SOURCE, the key and ARCH, when one of the LmConfig fields called KEYS (as
// LmConfig::declare names them) is not at its default: settings that do not apply to this architecture.
void require_defaults(const LmConfig& c, const std::string& source, const std::vector<std::string>& keys);
// The LmConfig keys only the Llama class reads (grouped-query heads, rotary settings, biases,
// window) and the ones only OPT reads: what the other architectures pass to require_defaults.
const std::vector<std::string>& llama_class_keys();
const std::vector<std::string>& opt_variant_keys();
// The LmConfig keys only Gemma 2 and 3 read (the attention scale, layer pattern, local rotary base, soft-capping).
const std::vector<std::string>& gemma_variant_keys();
// The LmConfig keys of Granite's scalings.
const std::vector<std::string>& granite_keys();
// The LmConfig keys of a mixture of experts (mixtral, qwen2_moe, qwen3_moe, gpt_oss).
const std::vector<std::string>& moe_keys();
// The LmConfig keys of gpt-oss's attention sinks and clamped experts.
const std::vector<std::string>& gpt_oss_keys();

// The architecture called NAME; fails naming SOURCE, the value and the known ones.
const LmArch& lm_arch(const std::string& name, const std::string& source = "model.arch");
// Whether an architecture is called NAME.
bool is_lm_arch(const std::string& name);
// The architecture with a wrapper (LmArch::hf_wrappers) whose model_type is MODEL_TYPE, and that
// wrapper; nullopt when none has one.
struct WrappedArch {
  const LmArch* arch;
  HfWrapper wrapper;
};
std::optional<WrappedArch> lm_arch_wrapped_by(const std::string& model_type);
// Every wrapper's model_type with the architecture inside, for messages: "gemma3" (gemma3_text inside).
std::string lm_wrapper_list();
// Every architecture's name, sorted.
std::vector<std::string> lm_arch_names();
// The names as a list for messages: "gpt2", "llama", ...
std::string lm_arch_list();

}  // namespace lofi::model

// In archs/STEM.cpp: LOFI_LM_ARCH(STEM, Class). The build generates the call of every
// archs/*.cpp's register function (see family/family.h for why not a static registrar).
#define LOFI_LM_ARCH(stem, Class)                   \
  namespace lofi::model::archs {                    \
  void register_##stem(LmArchRegistry& registry) {  \
    auto arch = std::make_shared<Class>();          \
    registry.add(arch->name(), arch);               \
  }                                                 \
  }
