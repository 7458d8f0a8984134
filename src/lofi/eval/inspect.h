// `lofi inspect`: a safetensors file's metadata (first line of each value) and its tensors as a table.
#pragma once
#include <string>

namespace lofi::eval {

std::string describe_safetensors(const std::string& path);

}  // namespace lofi::eval
