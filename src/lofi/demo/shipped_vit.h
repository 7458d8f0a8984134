// The vision demo's pretrained ViT, shipped inside the binary: assets/demo/vit_demo_shapes.safetensors,
// trained by assets/demo/vit_demo_shapes.sh on the demo's generated source task. Pretraining a ViT
// from scratch to a strong source model took 90 minutes on 2 cores (8000 steps at ~190 images/s), far beyond
// the demo's budget, so `lofi demo` starts from this file unless asked to retrain.
#pragma once
#include <string>
#include <string_view>

namespace lofi::demo {

// The safetensors file's bytes.
std::string_view shipped_vision_pretrained();
// Writes them to PATH (whole or not at all).
void write_shipped_vision_pretrained(const std::string& path);

}  // namespace lofi::demo
