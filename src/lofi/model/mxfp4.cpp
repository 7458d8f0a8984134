#include "lofi/model/mxfp4.h"

#include <algorithm>

#include "lofi/error.h"
#include "lofi/strings.h"

namespace lofi::model {
namespace {

constexpr int64_t kBlockBytes = 16;  // 32 four-bit numbers
constexpr int kScaleBias = 127;      // E8M0: the scale byte S stands for 2^(S - 127)
// Blocks decoded at once: their int32 nibble indices and fp32 values stay under 200 MB whatever
// the weight's size (a gpt-oss-120b expert tensor is 128 x 5760 x 2880 numbers).
constexpr int64_t kBlocksPerSlice = 1 << 18;

const char* kBlocksSuffix = "_blocks";
const char* kScalesSuffix = "_scales";

}  // namespace

std::vector<int64_t> mxfp4_weight_shape(const torch::Tensor& blocks, const torch::Tensor& scales, const std::string& source,
                                        const std::string& name) {
  const char* what_to_do = "; the checkpoint is damaged or not in MXFP4 as gpt-oss publishes it: download it again";
  if (blocks.scalar_type() != torch::kByte || scales.scalar_type() != torch::kByte)
    fail(source, ": MXFP4 weight '", name, "': ", mxfp4_blocks_name(name), " and ", mxfp4_scales_name(name),
         " must be uint8 (U8), found ", blocks.scalar_type(), " and ", scales.scalar_type(), what_to_do);
  if (blocks.dim() < 3 || blocks.size(-1) != kBlockBytes || blocks.sizes().slice(0, blocks.dim() - 1) != scales.sizes())
    fail(source, ": MXFP4 weight '", name, "': ", mxfp4_blocks_name(name), " has shape ", blocks.sizes(), " and ",
         mxfp4_scales_name(name), " ", scales.sizes(), "; expected (..., rows, blocks, 16) and (..., rows, blocks)", what_to_do);
  std::vector<int64_t> shape = scales.sizes().vec();  // (..., rows, blocks)
  shape.back() = shape.back() * 2 * kBlockBytes;       // (..., rows, cols)
  std::swap(shape[shape.size() - 2], shape.back());    // (..., cols, rows)
  return shape;
}

torch::Tensor mxfp4_dequantize(const torch::Tensor& blocks, const torch::Tensor& scales, torch::Dtype dtype,
                               const std::string& source, const std::string& name) {
  const std::vector<int64_t> shape = mxfp4_weight_shape(blocks, scales, source, name);
  // E2M1 by its four bits (sign, two exponent bits, one mantissa bit), as transformers' FP4_VALUES,
  // and each byte's two numbers, low nibble first: (256, 2), so a byte is decoded by one lookup.
  const torch::Tensor lut = torch::tensor({0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,  //
                                           -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f});
  const torch::Tensor pairs = torch::stack({lut.repeat({16}), lut.repeat_interleave(16)}, 1);  // [b] = (lut[b % 16], lut[b / 16])
  const int64_t groups = blocks.numel() / kBlockBytes;  // blocks of every row
  const torch::Tensor packed = blocks.reshape({groups * kBlockBytes});  // (groups * 16)
  const torch::Tensor exponents = scales.reshape({groups, 1});         // (groups, 1)
  torch::Tensor values = torch::empty({groups, 2 * kBlockBytes}, torch::TensorOptions().dtype(dtype));  // (groups, 32)
  for (int64_t g0 = 0; g0 < groups; g0 += kBlocksPerSlice) {
    const int64_t g1 = std::min(groups, g0 + kBlocksPerSlice);
    const torch::Tensor bytes = packed.slice(0, g0 * kBlockBytes, g1 * kBlockBytes).to(torch::kInt);  // (g * 16)
    // (g * 16, 2) -> (g, 32): each byte's low nibble's number, then its high one's.
    const torch::Tensor decoded = pairs.index_select(0, bytes).view({g1 - g0, 2 * kBlockBytes});
    // 2^(S - 127) as 2 * 2^(S - 128): finite for every byte (2^128 is not a float), so S = 255
    // gives what transformers' ldexp gives (0.5 * 2^128 = 2^127; larger numbers overflow as there).
    const torch::Tensor powers = torch::exp2(exponents.slice(0, g0, g1).to(torch::kFloat) - (kScaleBias + 1));  // (g, 1), exact
    values.slice(0, g0, g1).copy_(decoded.mul_(2).mul_(powers));  // exact: powers of two times numbers of two significant bits
  }
  // (groups, 32) -> (..., rows, cols) -> (..., cols, rows): gpt-oss's parameters are (experts,
  // in, out), the blocks run along each output row's inputs. A view: the copy into the parameter
  // transposes, so no second weight-sized tensor is made.
  std::vector<int64_t> rows_shape = shape;
  std::swap(rows_shape[rows_shape.size() - 2], rows_shape.back());
  return values.view(rows_shape).transpose(-2, -1);
}

std::optional<std::string> mxfp4_weight_name(const std::string& stored) {
  for (const char* suffix : {kBlocksSuffix, kScalesSuffix})
    if (ends_with(stored, suffix)) return stored.substr(0, stored.size() - std::string(suffix).size());
  return std::nullopt;
}

std::string mxfp4_blocks_name(const std::string& weight) { return weight + kBlocksSuffix; }
std::string mxfp4_scales_name(const std::string& weight) { return weight + kScalesSuffix; }

}  // namespace lofi::model
