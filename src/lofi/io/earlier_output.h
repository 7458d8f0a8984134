// Outputs written over an earlier one of their kind (a PEFT adapter directory, a Hugging Face
// model directory): what is removed first must be such an output, never whatever the user named.
#pragma once
#include <string>

namespace lofi::io {

// Removes DIR when it is an earlier output of the kind MARKER names: a directory holding MARKER
// (e.g. "adapter_config.json", "config.json") and nothing but regular files. No error when DIR does not
// exist. Anything else at DIR (a file, a device, a directory with subdirectories or without
// MARKER) is refused naming DIR and what it holds; nothing is removed. WHAT names the output in
// the message (e.g. "--out").
void remove_earlier_output(const std::string& dir, const std::string& marker, const std::string& what);

}  // namespace lofi::io
