// Decodes JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libpng) files into RGB uint8 tensors.
// The format is chosen by the file's signature, never its extension. Everything a decoder can
// complain about (corrupt, truncated, unsupported) becomes a lofi::Error naming the file.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lofi::data {

// Reads and decodes PATH: (H, W, 3) uint8, RGB. Grayscale is replicated to three channels,
// palettes are expanded, alpha is dropped (as PIL's convert("RGB") does), 16-bit samples keep
// their high byte (as PIL does for 16-bit RGB). CMYK JPEGs are rejected.
torch::Tensor decode_image(const std::string& path);

// Decodes an in-memory file; NAME is only used in error messages.
torch::Tensor decode_image_bytes(const std::vector<uint8_t>& bytes, const std::string& name);

}  // namespace lofi::data
