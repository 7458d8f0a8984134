// `lofi inspect`: a safetensors file's metadata (first line of each value) and its tensors as a table;
// also of a sharded model (its index.json, or its directory) and of a PEFT adapter directory.
#pragma once
#include <string>

namespace lofi::eval {

std::string describe_safetensors(const std::string& path);

}  // namespace lofi::eval
