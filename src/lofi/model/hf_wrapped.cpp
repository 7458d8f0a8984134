#include "lofi/model/hf_wrapped.h"

#include "lofi/model/arch.h"

namespace lofi::model {

bool wraps(const nlohmann::json& config, const std::string& arch) {
  if (!config.is_object() || !config.contains("model_type") || !config["model_type"].is_string()) return false;
  const auto wrapped = lm_arch_wrapped_by(config["model_type"].get<std::string>());
  return wrapped && wrapped->arch->name() == arch;
}

}  // namespace lofi::model
