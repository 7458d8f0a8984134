// The language models (model.arch = any of model/archs/) built from a config: the shape its model.*
// keys give, the weights its model.init names.
#pragma once
#include <cstdint>

#include "lofi/model/causal_lm.h"
#include "lofi/train/config.h"

namespace lofi::family {

// A model of CONFIG.arch: MODEL.init's weights when set (a safetensors file, or a Hugging Face
// directory whose config.json then gives the shape), else the usual init seeded by SEED.
model::CausalLm make_lm(const train::ModelConfig& config, uint64_t seed);

}  // namespace lofi::family
