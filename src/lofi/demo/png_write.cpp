// libpng's simplified API writes to memory in one call, which keeps the error handling in one
// place (no setjmp); the caller decides where the bytes go.
#include "lofi/demo/png_write.h"

#include <png.h>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"

namespace lofi::demo {

std::string encode_png(const uint8_t* rgb, int64_t height, int64_t width) {
  if (height <= 0 || width <= 0 || height > (1 << 20) || width > (1 << 20))
    fail("encode_png: image size must be positive and below 2^20, found ", height, "x", width);
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_RGB;
  // The first call sizes the buffer; the second fills it.
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, rgb, 0, nullptr))
    fail("encode_png: libpng failed to size a ", height, "x", width, " image: ", image.message);
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, rgb, 0, nullptr))
    fail("encode_png: libpng failed on a ", height, "x", width, " image: ", image.message);
  out.resize(size);
  return out;
}

std::string encode_png(const torch::Tensor& image) {
  if (image.dim() != 3 || image.size(2) != 3 || image.scalar_type() != torch::kUInt8 || !image.device().is_cpu())
    fail("encode_png: expected a (H, W, 3) uint8 CPU tensor, found ", image.sizes(), " ", image.scalar_type(),
         " on ", image.device());
  torch::Tensor rgb = image.contiguous();
  return encode_png(rgb.data_ptr<uint8_t>(), rgb.size(0), rgb.size(1));
}

void write_png(const std::string& path, const torch::Tensor& image) {
  std::string bytes;
  try {
    bytes = encode_png(image);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  io::write_file_atomic(path, bytes);
}

}  // namespace lofi::demo
