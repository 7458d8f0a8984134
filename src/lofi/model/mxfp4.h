// MXFP4, the OCP Microscaling format's 4-bit floats: weights in blocks of 32 E2M1 numbers (a sign,
// two exponent bits, one mantissa bit: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives), two to a
// byte with the low nibble first, each block sharing one E8M0 scale byte S (a factor 2^(S - 127)).
// gpt-oss's published checkpoints hold their experts' weights so (config.json's quantization_config,
// quant_method "mxfp4"): a weight X as X_blocks (..., rows, blocks, 16) and X_scales (..., rows,
// blocks), both uint8. lofi trains and merges plain floating-point weights: it reads these
// dequantized, exactly (every MXFP4 value is a bf16 and an fp32 number).
#pragma once
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

namespace lofi::model {

// The weight BLOCKS and SCALES hold, in DTYPE, as transformers reads it into gpt-oss
// (integrations/mxfp4.py, convert_moe_packed_tensors): the (..., rows, blocks * 32) values with the
// last two dimensions swapped, (..., blocks * 32, rows), as a transposed view (copy_ it where it
// goes). Decoded a slice of blocks at a time, so the working memory beyond the output is bounded.
// SOURCE (the checkpoint) and NAME (the weight's) go into errors.
torch::Tensor mxfp4_dequantize(const torch::Tensor& blocks, const torch::Tensor& scales, torch::Dtype dtype,
                               const std::string& source, const std::string& name);

// The shape mxfp4_dequantize gives for BLOCKS and SCALES; a pair that is not MXFP4 (not uint8, or
// shapes that do not fit each other) is an error naming SOURCE and weight NAME's two tensors.
std::vector<int64_t> mxfp4_weight_shape(const torch::Tensor& blocks, const torch::Tensor& scales, const std::string& source,
                                        const std::string& name);

// For a stored tensor name "X_blocks" or "X_scales", the weight's "X"; else none.
std::optional<std::string> mxfp4_weight_name(const std::string& stored);
std::string mxfp4_blocks_name(const std::string& weight);
std::string mxfp4_scales_name(const std::string& weight);

}  // namespace lofi::model
