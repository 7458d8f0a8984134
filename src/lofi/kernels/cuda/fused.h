// Launchers of lofi's fused elementwise CUDA kernels (fused.cu), over raw device pointers: the
// .cu file includes no LibTorch header, so nvcc compiles it in seconds. kernels/rotary.cpp and
// kernels/swiglu.cpp check shapes and dtypes and pass the current stream. Each returns nullptr on
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

}  // namespace lofi::kernels::cuda
