#include "lofi/io/hf_wrapped_names.h"

#include "lofi/strings.h"

namespace lofi::io {
namespace {
constexpr const char* kLanguageModel = "language_model.";      // + "model.layers..." / "lm_head.weight"
constexpr const char* kModelLanguageModel = "model.language_model.";  // for "model."
}  // namespace

WrappedNames wrapped_names(const std::vector<std::string>& names) {
  for (const auto& name : names) {
    if (starts_with(name, kLanguageModel)) return WrappedNames::kLanguageModelPrefix;
    if (starts_with(name, kModelLanguageModel)) return WrappedNames::kModelLanguageModel;
  }
  return WrappedNames::kNone;
}

std::string language_model_name(const std::string& name, WrappedNames spelling) {
  switch (spelling) {
    case WrappedNames::kNone:
      return name;
    case WrappedNames::kLanguageModelPrefix:
      return starts_with(name, kLanguageModel) ? name.substr(std::string(kLanguageModel).size()) : "";
    case WrappedNames::kModelLanguageModel:
      if (name == "lm_head.weight") return name;
      return starts_with(name, kModelLanguageModel) ? "model." + name.substr(std::string(kModelLanguageModel).size()) : "";
  }
  return "";
}

std::string wrapped_name(const std::string& lm_name, WrappedNames spelling) {
  switch (spelling) {
    case WrappedNames::kNone:
      return lm_name;
    case WrappedNames::kLanguageModelPrefix:
      return kLanguageModel + lm_name;
    case WrappedNames::kModelLanguageModel:
      return starts_with(lm_name, "model.") ? kModelLanguageModel + lm_name.substr(std::string("model.").size()) : lm_name;
  }
  return lm_name;
}

}  // namespace lofi::io
