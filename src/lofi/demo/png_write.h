// PNG encoding (8-bit RGB) with libpng, in memory or to a file written atomically. Decoding is
// the image loader's business (lofi/data/image_*), not this file's.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace lofi::demo {

// The PNG bytes of an image of HEIGHT x WIDTH pixels, RGB interleaved (HEIGHT * WIDTH * 3 bytes).
std::string encode_png(const uint8_t* rgb, int64_t height, int64_t width);
// IMAGE: (H, W, 3) uint8 on the CPU; made contiguous if it is not.
std::string encode_png(const torch::Tensor& image);
// Writes IMAGE to PATH as a PNG, atomically (temporary name, then rename).
void write_png(const std::string& path, const torch::Tensor& image);

}  // namespace lofi::demo
