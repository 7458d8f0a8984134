// The arithmetic of lofi's fused elementwise kernels, one definition for the CUDA kernels
// (kernels/cuda/fused.cu) and their CPU loops (kernels/rotary.cpp, kernels/swiglu.cpp), so the CPU
// tests check the very formulas the GPU runs. Everything in fp32, whatever the tensors' dtype.
#pragma once

#ifdef __CUDACC__
#define LOFI_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LOFI_HOST_DEVICE inline
#endif

#include <cmath>

namespace lofi::kernels::math {

// Rotary position embedding of one pair (x1 at d, x2 at d + D/2) with the angles' cosines and
// sines at d (c1, s1) and d + D/2 (c2, s2), as transformers' apply_rotary_pos_emb:
//   y = x * cos + rotate_half(x) * sin,  rotate_half(x) = (-x2, x1)
// BACKWARD: the gradient of that map (its transpose) applied to the incoming gradient (g1, g2):
//   dx1 = g1 * c1 + g2 * s2,  dx2 = g2 * c2 - g1 * s1
LOFI_HOST_DEVICE void rotary_pair(float x1, float x2, float c1, float s1, float c2, float s2, bool backward, float& y1,
                                  float& y2) {
  if (!backward) {
    y1 = x1 * c1 - x2 * s1;
    y2 = x2 * c2 + x1 * s2;
  } else {
    y1 = x1 * c1 + x2 * s2;
    y2 = x2 * c2 - x1 * s1;
  }
}

LOFI_HOST_DEVICE float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

// SwiGLU: silu(gate) * up, silu(g) = g * sigmoid(g).
LOFI_HOST_DEVICE float swiglu(float g, float u) { return g * sigmoid(g) * u; }

// Its gradients given the output's gradient dy:
//   d/du = dy * silu(g),  d/dg = dy * u * sigmoid(g) * (1 + g * (1 - sigmoid(g)))
LOFI_HOST_DEVICE void swiglu_backward(float dy, float g, float u, float& dg, float& du) {
  const float s = sigmoid(g);
  du = dy * g * s;
  dg = dy * u * s * (1.0f + g * (1.0f - s));
}

}  // namespace lofi::kernels::math
