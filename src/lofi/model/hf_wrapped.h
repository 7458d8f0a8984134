// Vision-language checkpoints (Gemma 3 4B and larger: Gemma3ForConditionalGeneration) hold a
// language model lofi trains beside a vision tower and projector it does not. Their config.json
// keeps the language model's config under "text_config" (LmArch::hf_wrappers says which
// model_types wrap which architecture); their weights name it as io/hf_wrapped_names.h says.
// lofi reads the language model as its own checkpoint names it, and writes a fine-tuned one back
// into the same layout (model/hf.h): the other tensors, config.json keys and processor files as
// they were.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "lofi/io/hf_wrapped_names.h"

namespace lofi::model {

// Whether CONFIG (a config.json) is one of ARCH's wrappers, and so holds its model under text_config.
bool wraps(const nlohmann::json& config, const std::string& arch);

}  // namespace lofi::model
