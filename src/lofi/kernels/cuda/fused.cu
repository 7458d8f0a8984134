// lofi's fused elementwise CUDA kernels: rotary position embedding and SwiGLU, each one pass over
// memory forward and one backward, where LibTorch's composite takes five to six kernels and
// keeps intermediate tensors (LibTorch has no rotary or SwiGLU op). The arithmetic is
// fused_math.h's, shared with the CPU loops the tests check against the composite.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "lofi/kernels/cuda/fused.h"
#include "lofi/kernels/fused_math.h"

namespace lofi::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half(v); }

// One thread per (b, h, t, d < D/2) pair, d fastest so neighbouring threads touch neighbouring
// memory.
template <typename T>
__global__ void rotary_kernel(const T* x, T* y, RotaryShape s, const float* cos, const float* sin, bool backward) {
  const int64_t half = s.D / 2, pairs = s.B * s.H * s.T * half;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < pairs;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = p % half, t = p / half % s.T, h = p / half / s.T % s.H, b = p / half / s.T / s.H;
    const int64_t xi = b * s.x_stride[0] + h * s.x_stride[1] + t * s.x_stride[2] + d;
    const int64_t yi = b * s.y_stride[0] + h * s.y_stride[1] + t * s.y_stride[2] + d;
    const int64_t a = t * s.D + d;  // cos / sin at d; + half at d + D/2
    float y1, y2;
    math::rotary_pair(load(x, xi), load(x, xi + half), cos[a], sin[a], cos[a + half], sin[a + half], backward, y1, y2);
    store(y, yi, y1);
    store(y, yi + half, y2);
  }
}

template <typename T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store(out, i, math::swiglu(load(gate, i), load(up, i)));
}

template <typename T>
__global__ void swiglu_backward_kernel(const T* grad, const T* gate, const T* up, T* dgate, T* dup, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float dg, du;
    math::swiglu_backward(load(grad, i), load(gate, i), load(up, i), dg, du);
    store(dgate, i, dg);
    store(dup, i, du);
  }
}

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : b > (1 << 20) ? (1 << 20) : b);  // grid-stride loops cover the rest
}

const char* launched() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// Calls F with a null pointer of the element type DTYPE names.
template <typename F>
const char* with_type(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::f32: f(static_cast<float*>(nullptr)); break;
    case Dtype::bf16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
    case Dtype::f16: f(static_cast<__half*>(nullptr)); break;
  }
  return launched();
}

}  // namespace

const char* rotary(Dtype dtype, const void* x, void* y, const RotaryShape& shape, const float* cos, const float* sin,
                   bool backward, void* stream) {
  const int64_t pairs = shape.B * shape.H * shape.T * (shape.D / 2);
  if (pairs == 0) return nullptr;
  return with_type(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    rotary_kernel<T><<<blocks_for(pairs), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(x), static_cast<T*>(y), shape, cos, sin, backward);
  });
}

const char* swiglu_forward(Dtype dtype, const void* gate, const void* up, void* out, int64_t n, void* stream) {
  if (n == 0) return nullptr;
  return with_type(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    swiglu_forward_kernel<T><<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out), n);
  });
}

const char* swiglu_backward(Dtype dtype, const void* grad, const void* gate, const void* up, void* dgate, void* dup,
                            int64_t n, void* stream) {
  if (n == 0) return nullptr;
  return with_type(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    swiglu_backward_kernel<T><<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(grad), static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(dgate),
        static_cast<T*>(dup), n);
  });
}

}  // namespace lofi::kernels::cuda
