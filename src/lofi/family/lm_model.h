// The language models (model.arch = any of model/archs/) built from a config: the shape its model.*
// keys give, the weights its model.init names.
#pragma once
#include <cstdint>
#include <string>

#include "lofi/model/causal_lm.h"
#include "lofi/train/config.h"

namespace lofi::family {

// A model of CONFIG.arch: MODEL.init's weights when set (a safetensors file, or a Hugging Face
// directory whose config.json then gives the shape), else the usual init seeded by SEED. With
// DEFERRED (a fully sharded start), the weights of lofi's own layers are made without memory and
// left to it, each with the value it would have had (model/deferred_weights.h); not for a LoRA
// adapter's base.
model::CausalLm make_lm(const train::ModelConfig& config, uint64_t seed, model::DeferredWeights* deferred = nullptr);

// The tokenizer directory of MODEL (a checkpoint, adapter or Hugging Face directory): GIVEN when
// set; else the model's own directory; else the Hugging Face directory its run started from.
// Empty when there is none. WHAT (e.g. "generate") names the command in the error of
// find_tokenizer_dir_or_fail; BYTES_TOO: it also takes "bytes" (ids are bytes) and says so.
std::string find_tokenizer_dir(const std::string& model, const std::string& given);
std::string find_tokenizer_dir_or_fail(const std::string& model, const std::string& given, const std::string& what,
                                       bool bytes_too);

}  // namespace lofi::family
