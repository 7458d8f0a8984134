// Launchers of lofi's fused CUDA kernels (fused.cu), over raw device pointers: the .cu file
// includes no LibTorch header, so nvcc compiles it in seconds. kernels/rotary.cpp,
// kernels/swiglu.cpp and kernels/rms_norm.cpp check shapes and dtypes and pass the current stream. Each returns nullptr on
// success, else CUDA's error text for the launch.
#pragma once
#include <cstdint>

namespace lofi::kernels::cuda {

enum class Dtype : int { f32, bf16, f16 };

// x and y: (B, H, T, D) with the last dimension contiguous and the other three strided (in
// elements); cos and sin: (T, D) fp32, contiguous. Writes y = rotary(x) or, with BACKWARD, the
// gradient map (fused_math.h).
struct RotaryShape {
  int64_t B, H, T, D;
  int64_t x_stride[3], y_stride[3];  // of B, H, T
};
const char* rotary(Dtype dtype, const void* x, void* y, const RotaryShape& shape, const float* cos, const float* sin,
                   bool backward, void* stream);

// N contiguous elements each.
const char* swiglu_forward(Dtype dtype, const void* gate, const void* up, void* out, int64_t n, void* stream);
const char* swiglu_backward(Dtype dtype, const void* grad, const void* gate, const void* up, void* dgate, void* dup,
                            int64_t n, void* stream);

// RMSNorm of X + RESIDUAL over ROWS rows of WIDTH contiguous elements (X, WEIGHT, SUM, Y and RSTD
// fp32; RESIDUAL in RESIDUAL_DTYPE), as cpu_avx2.h's rms_norm_forward with a residual: writes the
// sum to SUM, the norm to Y and each row's rstd to RSTD (ROWS).
const char* add_rms_norm_forward(Dtype residual_dtype, const float* x, const void* residual, const float* weight, float* sum,
                                 float* y, float* rstd, int64_t rows, int64_t width, float eps, void* stream);

// Its backward, as cpu_avx2.h's rms_norm_backward (all fp32): DX (null: not wanted) with DSUM (null:
// none) added; the weight's gradient as one partial sum per block of the grid into DWEIGHT_PARTS
// (BLOCKS x WIDTH, zeroed; null: not wanted), which the caller adds up.
const char* rms_norm_backward(const float* dy, const float* dsum, const float* x, const float* weight, const float* rstd,
                              float* dx, float* dweight_parts, int blocks, int64_t rows, int64_t width, void* stream);

// LayerNorm of X + RESIDUAL, as cpu_avx2.h's add_layer_norm_forward (X, WEIGHT, BIAS, SUM, Y,
// MEAN and RSTD fp32; RESIDUAL in RESIDUAL_DTYPE).
const char* add_layer_norm_forward(Dtype residual_dtype, const float* x, const void* residual, const float* weight,
                                   const float* bias, float* sum, float* y, float* mean, float* rstd, int64_t rows, int64_t width,
                                   float eps, void* stream);

// Its backward, as cpu_avx2.h's layer_norm_backward (all fp32): DX (null: not wanted) with DSUM
// (null: none) added; the weight's and the bias's gradients as one partial sum per block of the
// grid into DWEIGHT_PARTS and DBIAS_PARTS (BLOCKS x WIDTH each, zeroed; null: not wanted).
const char* layer_norm_backward(const float* dy, const float* dsum, const float* x, const float* weight, const float* mean,
                                const float* rstd, float* dx, float* dweight_parts, float* dbias_parts, int blocks, int64_t rows,
                                int64_t width, void* stream);

}  // namespace lofi::kernels::cuda
