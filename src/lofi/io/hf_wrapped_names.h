// How vision-language checkpoints (Gemma 3 4B and larger: Gemma3ForConditionalGeneration) name
// the language model inside them, beside a vision tower and projector; model/hf_wrapped.h says
// how lofi reads and writes such checkpoints. Two spellings:
//   transformers 4's, which the hub's files carry and transformers 5 writes back:
//     "language_model." + the language model's own names ("language_model.model.layers.0...",
//     "language_model.lm_head.weight");
//   transformers 5's module names (what PEFT names adapters by today): "model.language_model."
//     where the language model has "model.", and "lm_head.weight".
#pragma once
#include <string>
#include <vector>

namespace lofi::io {

enum class WrappedNames {
  kNone,                 // not a wrapped checkpoint
  kLanguageModelPrefix,  // "language_model.model.*", "language_model.lm_head.weight"
  kModelLanguageModel,   // "model.language_model.*", "lm_head.weight"
};

// How NAMES (a checkpoint's tensors) spell a wrapped language model; kNone when they hold none.
WrappedNames wrapped_names(const std::vector<std::string>& names);
// NAME as the language model's own checkpoint names it ("model.layers.0...", "lm_head.weight"),
// or "" when NAME is not the language model's (the vision tower's, the projector's).
std::string language_model_name(const std::string& name, WrappedNames spelling);
// The other way: LM_NAME as a checkpoint of SPELLING names it.
std::string wrapped_name(const std::string& lm_name, WrappedNames spelling);

}  // namespace lofi::io
