// JPEG through TurboJPEG (its API reports errors as return codes, so libjpeg's default error
// handler, which calls exit(), is never reached) and PNG through libpng's transform API with
// the setjmp error handling libpng requires. Both return (H, W, 3) uint8 RGB.
#include "lofi/data/image_decode.h"

#include <png.h>
#include <turbojpeg.h>

#include <cerrno>
#include <csetjmp>
#include <cstring>
#include <fstream>
#include <memory>

#include "lofi/error.h"

namespace lofi::data {
namespace {

// A damaged header can claim any size; refuse before allocating (2^28 pixels: 16384 x 16384).
constexpr int64_t kMaxPixels = int64_t{1} << 28;

void check_size(int64_t width, int64_t height, const std::string& name) {
  if (width <= 0 || height <= 0 || width * height > kMaxPixels)
    fail(name, ": expected an image of 1 to ", kMaxPixels, " pixels, found ", width, "x", height);
}

bool is_jpeg(const std::vector<uint8_t>& b) { return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

bool is_png(const std::vector<uint8_t>& b) { return b.size() >= 8 && png_sig_cmp(b.data(), 0, 8) == 0; }

torch::Tensor decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& name) {
  std::unique_ptr<void, int (*)(tjhandle)> tj(tjInitDecompress(), tjDestroy);
  if (!tj) fail(name, ": cannot initialise the JPEG decoder: ", tjGetErrorStr2(nullptr));
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  auto* data = const_cast<unsigned char*>(bytes.data());
  auto size = static_cast<unsigned long>(bytes.size());
  if (tjDecompressHeader3(tj.get(), data, size, &width, &height, &subsamp, &colorspace) != 0)
    fail(name, ": expected a JPEG image, found an unreadable header (", tjGetErrorStr2(tj.get()), ")");
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
    fail(name, ": expected an RGB or grayscale JPEG, found CMYK; convert it to RGB first");
  check_size(width, height, name);
  auto out = torch::empty({height, width, 3}, torch::kUInt8);  // (H, W, 3)
  // STOPONWARNING: a truncated file is otherwise "decoded" with its missing rows left grey.
  if (tjDecompress2(tj.get(), data, size, out.data_ptr<uint8_t>(), width, 0, height, TJPF_RGB,
                    TJFLAG_STOPONWARNING | TJFLAG_ACCURATEDCT) != 0)
    fail(name, ": expected a complete JPEG image, decoding failed (", tjGetErrorStr2(tj.get()), ")");
  return out;
}

struct PngSource {
  const std::vector<uint8_t>* bytes = nullptr;
  size_t offset = 0;
};

void png_read_memory(png_structp png, png_bytep out, png_size_t count) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (src->offset + count > src->bytes->size()) png_error(png, "unexpected end of file (truncated)");
  std::memcpy(out, src->bytes->data() + src->offset, count);
  src->offset += count;
}

// libpng reports errors by longjmp from this callback's caller; the message is kept for ours.
void png_on_error(png_structp png, png_const_charp message) {
  auto* text = static_cast<std::string*>(png_get_error_ptr(png));
  *text = message;
  png_longjmp(png, 1);
}
void png_on_warning(png_structp, png_const_charp) {}

// Owns libpng's state. The two steps below run under setjmp and hold only plain locals, so a
// longjmp out of libpng skips no destructor and leaves no indeterminate object behind.
struct PngReader {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::string message;  // set by png_on_error
  PngSource src;
  ~PngReader() { png_destroy_read_struct(&png, &info, nullptr); }
};

bool png_read_header(PngReader& r, png_uint_32* width, png_uint_32* height) {
  if (setjmp(png_jmpbuf(r.png))) return false;
  png_set_read_fn(r.png, &r.src, png_read_memory);
  png_read_info(r.png, r.info);
  int color = png_get_color_type(r.png, r.info);
  // To 8-bit RGB: palettes and low-bit grays expand, 16-bit keeps the high byte (PIL does the
  // same for 16-bit RGB), alpha is dropped rather than composited (PIL's convert("RGB")).
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(r.png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(r.png, r.info) < 8) png_set_expand_gray_1_2_4_to_8(r.png);
  if (png_get_bit_depth(r.png, r.info) == 16) png_set_strip_16(r.png);
  if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(r.png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(r.png);
  png_set_interlace_handling(r.png);
  png_read_update_info(r.png, r.info);
  *width = png_get_image_width(r.png, r.info);
  *height = png_get_image_height(r.png, r.info);
  if (png_get_rowbytes(r.png, r.info) != static_cast<size_t>(*width) * 3)
    png_error(r.png, "unsupported pixel layout after conversion to RGB");
  return true;
}

bool png_read_pixels(PngReader& r, png_bytepp rows) {
  if (setjmp(png_jmpbuf(r.png))) return false;
  png_read_image(r.png, rows);
  png_read_end(r.png, nullptr);
  return true;
}

torch::Tensor decode_png(const std::vector<uint8_t>& bytes, const std::string& name) {
  PngReader r;
  r.src.bytes = &bytes;
  r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r.message, png_on_error, png_on_warning);
  if (r.png) r.info = png_create_info_struct(r.png);
  if (!r.png || !r.info) fail(name, ": cannot initialise the PNG decoder");
  png_uint_32 width = 0, height = 0;
  if (!png_read_header(r, &width, &height)) fail(name, ": expected a valid PNG image, found: ", r.message);
  check_size(width, height, name);
  auto out = torch::empty({static_cast<int64_t>(height), static_cast<int64_t>(width), 3}, torch::kUInt8);  // (H, W, 3)
  std::vector<png_bytep> rows(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = out.data_ptr<uint8_t>() + static_cast<size_t>(y) * width * 3;
  if (!png_read_pixels(r, rows.data())) fail(name, ": expected a complete PNG image, found: ", r.message);
  return out;
}

}  // namespace

torch::Tensor decode_image_bytes(const std::vector<uint8_t>& bytes, const std::string& name) {
  if (is_jpeg(bytes)) return decode_jpeg(bytes, name);
  if (is_png(bytes)) return decode_png(bytes, name);
  fail(name, ": expected a JPEG or PNG image, found ", bytes.empty() ? "an empty file" : "an unknown signature");
}

torch::Tensor decode_image(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open image: ", std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(path, ": cannot read image: ", std::strerror(errno));
  return decode_image_bytes(bytes, path);
}

}  // namespace lofi::data
