// lofi's fused CUDA kernels: rotary position embedding and SwiGLU, each one pass over memory
// forward and one backward, where LibTorch's composite takes five to six kernels and keeps
// intermediate tensors (LibTorch has no rotary or SwiGLU op); the arithmetic is fused_math.h's,
// shared with the CPU loops the tests check against the composite. And RMSNorm with the residual
// add before it (LibTorch's fused rms_norm takes no residual): the sum and the norm in one pass
// forward, the norm's gradient and the sum's other gradient added in one pass backward, as
// cpu_avx2.cpp's loops; and LayerNorm with the residual add the same way.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
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

// SwiGLU streams three (or five) tensors through memory: each thread moves 16 bytes of each at a
// time (8 bf16 or 4 fp32 elements), the widest load a thread has, where one element a thread
// reached 1.6 TB/s on an H200. PACKS is the number of whole 16-byte packs; the last N mod P
// elements go one at a time.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

template <typename T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* out, int64_t n, int64_t packs) {
  constexpr int P = Pack<T>::kSize;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  for (int64_t i = first; i < packs; i += stride) {
    const Pack<T> g = reinterpret_cast<const Pack<T>*>(gate)[i], u = reinterpret_cast<const Pack<T>*>(up)[i];
    Pack<T> o;
#pragma unroll
    for (int j = 0; j < P; ++j) store(o.v, j, math::swiglu(load(g.v, j), load(u.v, j)));
    reinterpret_cast<Pack<T>*>(out)[i] = o;
  }
  for (int64_t i = packs * P + first; i < n; i += stride) store(out, i, math::swiglu(load(gate, i), load(up, i)));
}

template <typename T>
__global__ void swiglu_backward_kernel(const T* grad, const T* gate, const T* up, T* dgate, T* dup, int64_t n, int64_t packs) {
  constexpr int P = Pack<T>::kSize;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  for (int64_t i = first; i < packs; i += stride) {
    const Pack<T> dy = reinterpret_cast<const Pack<T>*>(grad)[i], g = reinterpret_cast<const Pack<T>*>(gate)[i],
                  u = reinterpret_cast<const Pack<T>*>(up)[i];
    Pack<T> dg, du;
#pragma unroll
    for (int j = 0; j < P; ++j) {
      float a, b;
      math::swiglu_backward(load(dy.v, j), load(g.v, j), load(u.v, j), a, b);
      store(dg.v, j, a);
      store(du.v, j, b);
    }
    reinterpret_cast<Pack<T>*>(dgate)[i] = dg;
    reinterpret_cast<Pack<T>*>(dup)[i] = du;
  }
  for (int64_t i = packs * P + first; i < n; i += stride) {
    float a, b;
    math::swiglu_backward(load(grad, i), load(gate, i), load(up, i), a, b);
    store(dgate, i, a);
    store(dup, i, b);
  }
}

// RMSNorm: one block of kNormThreads a row (a grid-stride loop over rows), each thread taking
// every kNormThreads-th element of it.
constexpr int kNormThreads = 256;

// The sum of V over the block (a whole number of warps): the same value in every thread, added in
// a fixed order (each warp's lanes, then the warps in order). SHARED: 32 floats.
__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += shared[w];
  __syncthreads();  // every thread has read SHARED before the next call writes it
  return total;
}

// Writes a row's sum XR + RR to HR, this thread's elements of it, and returns the sum of F over them.
template <typename R, typename F>
__device__ float add_row(const float* xr, const R* rr, float* hr, int64_t width, F f) {
  float total = 0.0f;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    const float v = xr[i] + load(rr, i);
    hr[i] = v;
    total += f(v);
  }
  return total;
}

template <typename R>
__global__ void add_rms_norm_forward_kernel(const float* x, const R* residual, const float* weight, float* sum, float* y,
                                            float* rstd, int64_t rows, int64_t width, float eps) {
  __shared__ float shared[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    float* hr = sum + row * width;
    float* yr = y + row * width;
    const float squares = add_row(x + row * width, residual + row * width, hr, width, [](float v) { return v * v; });
    const float inv = 1.0f / sqrtf(block_sum(squares, shared) / static_cast<float>(width) + eps);
    if (threadIdx.x == 0) rstd[row] = inv;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) yr[i] = hr[i] * inv * weight[i];  // hr[i]: this thread's own write
  }
}

// With g = DY * WEIGHT: DX = rstd * (g - X * rstd^2 * mean(g * X)) + DSUM; this block's part of the
// weight's gradient, the sum over its rows of DY * X * rstd, into PARTS (WIDTH).
__global__ void rms_norm_backward_kernel(const float* dy, const float* dsum, const float* x, const float* weight,
                                         const float* rstd, float* dx, float* dweight_parts, int64_t rows, int64_t width) {
  __shared__ float shared[32];
  float* part = dweight_parts != nullptr ? dweight_parts + blockIdx.x * width : nullptr;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* dyr = dy + row * width;
    const float* xr = x + row * width;
    const float inv = rstd[row];
    if (dx != nullptr) {  // the same for every thread: block_sum's barriers are reached by all
      float dot = 0.0f;
      for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dot += dyr[i] * weight[i] * xr[i];
      const float c = block_sum(dot, shared) * inv * inv / static_cast<float>(width);
      float* dxr = dx + row * width;
      const float* dsr = dsum != nullptr ? dsum + row * width : nullptr;
      for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
        const float d = (dyr[i] * weight[i] - xr[i] * c) * inv;
        dxr[i] = dsr != nullptr ? d + dsr[i] : d;
      }
    }
    if (part != nullptr)
      for (int64_t i = threadIdx.x; i < width; i += blockDim.x) part[i] += dyr[i] * xr[i] * inv;  // each column one thread's
  }
}

template <typename R>
__global__ void add_layer_norm_forward_kernel(const float* x, const R* residual, const float* weight, const float* bias,
                                              float* sum, float* y, float* mean, float* rstd, int64_t rows, int64_t width,
                                              float eps) {
  __shared__ float shared[32];
  const float n = static_cast<float>(width);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    float* hr = sum + row * width;
    float* yr = y + row * width;
    const float mu = block_sum(add_row(x + row * width, residual + row * width, hr, width, [](float v) { return v; }), shared) / n;
    float squares = 0.0f;  // of the centred sum: two passes, as the CPU loop
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
      const float d = hr[i] - mu;  // this thread's own writes
      squares += d * d;
    }
    const float inv = 1.0f / sqrtf(block_sum(squares, shared) / n + eps);
    if (threadIdx.x == 0) {
      mean[row] = mu;
      rstd[row] = inv;
    }
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) yr[i] = (hr[i] - mu) * inv * weight[i] + bias[i];
  }
}

// With xhat = (X - mean) * rstd and g = DY * WEIGHT: DX = rstd * (g - mean(g) - xhat * mean(g * xhat))
// + DSUM; this block's parts of the weight's and bias's gradients (sums over its rows of DY * xhat
// and DY) into its rows of DWEIGHT_PARTS and DBIAS_PARTS.
__global__ void layer_norm_backward_kernel(const float* dy, const float* dsum, const float* x, const float* weight,
                                           const float* mean, const float* rstd, float* dx, float* dweight_parts,
                                           float* dbias_parts, int64_t rows, int64_t width) {
  __shared__ float shared[32];
  const float n = static_cast<float>(width);
  float* wpart = dweight_parts != nullptr ? dweight_parts + blockIdx.x * width : nullptr;
  float* bpart = dbias_parts != nullptr ? dbias_parts + blockIdx.x * width : nullptr;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* dyr = dy + row * width;
    const float* xr = x + row * width;
    const float mu = mean[row], inv = rstd[row];
    if (dx != nullptr) {  // the same for every thread: block_sum's barriers are reached by all
      float g_sum = 0.0f, gx_sum = 0.0f;
      for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
        const float g = dyr[i] * weight[i];
        g_sum += g;
        gx_sum += g * ((xr[i] - mu) * inv);
      }
      const float a = block_sum(g_sum, shared) / n, b = block_sum(gx_sum, shared) / n;
      float* dxr = dx + row * width;
      const float* dsr = dsum != nullptr ? dsum + row * width : nullptr;
      for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
        const float d = (dyr[i] * weight[i] - a - (xr[i] - mu) * inv * b) * inv;
        dxr[i] = dsr != nullptr ? d + dsr[i] : d;
      }
    }
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {  // each column one thread's
      if (wpart != nullptr) wpart[i] += dyr[i] * ((xr[i] - mu) * inv);
      if (bpart != nullptr) bpart[i] += dyr[i];
    }
  }
}

unsigned norm_blocks_for(int64_t rows) { return static_cast<unsigned>(rows < (1 << 16) ? rows : (1 << 16)); }

// Whole 16-byte packs of N elements of T when every pointer is 16-byte aligned (tensors fresh
// from the caching allocator are), else 0: every element then goes one at a time.
template <typename T>
int64_t packs_of(int64_t n, std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return 0;
  return n / Pack<T>::kSize;
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

const char* add_rms_norm_forward(Dtype residual_dtype, const float* x, const void* residual, const float* weight, float* sum,
                                 float* y, float* rstd, int64_t rows, int64_t width, float eps, void* stream) {
  if (rows == 0 || width == 0) return nullptr;
  return with_type(residual_dtype, [&](auto* type) {
    using R = std::remove_pointer_t<decltype(type)>;
    add_rms_norm_forward_kernel<R><<<norm_blocks_for(rows), kNormThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        x, static_cast<const R*>(residual), weight, sum, y, rstd, rows, width, eps);
  });
}

const char* rms_norm_backward(const float* dy, const float* dsum, const float* x, const float* weight, const float* rstd,
                              float* dx, float* dweight_parts, int blocks, int64_t rows, int64_t width, void* stream) {
  if (rows == 0 || width == 0 || blocks < 1) return nullptr;
  rms_norm_backward_kernel<<<static_cast<unsigned>(blocks), kNormThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      dy, dsum, x, weight, rstd, dx, dweight_parts, rows, width);
  return launched();
}

const char* add_layer_norm_forward(Dtype residual_dtype, const float* x, const void* residual, const float* weight,
                                   const float* bias, float* sum, float* y, float* mean, float* rstd, int64_t rows, int64_t width,
                                   float eps, void* stream) {
  if (rows == 0 || width == 0) return nullptr;
  return with_type(residual_dtype, [&](auto* type) {
    using R = std::remove_pointer_t<decltype(type)>;
    add_layer_norm_forward_kernel<R><<<norm_blocks_for(rows), kNormThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        x, static_cast<const R*>(residual), weight, bias, sum, y, mean, rstd, rows, width, eps);
  });
}

const char* layer_norm_backward(const float* dy, const float* dsum, const float* x, const float* weight, const float* mean,
                                const float* rstd, float* dx, float* dweight_parts, float* dbias_parts, int blocks, int64_t rows,
                                int64_t width, void* stream) {
  if (rows == 0 || width == 0 || blocks < 1) return nullptr;
  layer_norm_backward_kernel<<<static_cast<unsigned>(blocks), kNormThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      dy, dsum, x, weight, mean, rstd, dx, dweight_parts, dbias_parts, rows, width);
  return launched();
}

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
    const int64_t packs = packs_of<T>(n, {gate, up, out});
    swiglu_forward_kernel<T><<<blocks_for(packs > 0 ? packs : n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out), n, packs);
  });
}

const char* swiglu_backward(Dtype dtype, const void* grad, const void* gate, const void* up, void* dgate, void* dup,
                            int64_t n, void* stream) {
  if (n == 0) return nullptr;
  return with_type(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    const int64_t packs = packs_of<T>(n, {grad, gate, up, dgate, dup});
    swiglu_backward_kernel<T><<<blocks_for(packs > 0 ? packs : n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(grad), static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(dgate),
        static_cast<T*>(dup), n, packs);
  });
}

}  // namespace lofi::kernels::cuda
