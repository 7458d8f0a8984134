// lofi's CPU loops built for AVX2 + FMA: fused elementwise passes that LibTorch has no single op
// for, vectorised with ATen's own Vectorized<float> (eight floats a register, Sleef's exp), so a
// pass costs what one of ATen's elementwise kernels costs. cpu_avx2.cpp alone is compiled with
// -mavx2 -mfma (CMakeLists.txt); callers ask avx2_available() first and run ATen's composite where
// it says no (another CPU family, or an x86 CPU without AVX2). Raw fp32 pointers over [0, n): the
// callers split the range over threads.
#pragma once

#include <cstdint>

namespace lofi::kernels::avx2 {

// Whether this build has the AVX2 loops and this CPU runs them. Compiled without -mavx2.
bool avx2_available();

// OUT = silu(GATE) * UP.
void swiglu_forward(const float* gate, const float* up, float* out, int64_t n);

// Given the output's gradient DY: DGATE = DY * UP * s * (1 + g * (1 - s)), DUP = DY * silu(g),
// s = sigmoid(g) computed again from GATE (nothing but gate and up is kept for backward).
void swiglu_backward(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n);

// RMSNorm over ROWS rows of WIDTH contiguous floats: Y = X * rstd * WEIGHT with
// rstd = 1 / sqrt(mean(X^2) + EPS) per row, written to RSTD (ROWS) for the backward pass. With a
// RESIDUAL (else null), the norm is of X + RESIDUAL, written to SUM as it is formed (the residual
// stream's next value): one pass over X and RESIDUAL instead of an add and a norm.
void rms_norm_forward(const float* x, const float* residual, const float* weight, float* sum, float* y, float* rstd,
                      int64_t rows, int64_t width, float eps);

// Its gradients given DY, from the norm's input X, WEIGHT and the forward's RSTD: with g = DY * WEIGHT,
//   DX = rstd * (g - X * rstd^2 * mean(g * X)) [+ DSUM],  DWEIGHT += sum over the rows of DY * X * rstd.
// DSUM (the gradient of the residual sum's other uses, else null) is added in the same pass, where
// autograd would add the two gradients of the sum in a pass of its own. DX or DWEIGHT may be null
// (not wanted). DWEIGHT (WIDTH) is added to, not overwritten.
void rms_norm_backward(const float* dy, const float* dsum, const float* x, const float* weight, const float* rstd, float* dx,
                       float* dweight, int64_t rows, int64_t width);

// LayerNorm of X + RESIDUAL over ROWS rows of WIDTH contiguous floats, the sum written to SUM as it
// is formed: Y = (h - mean) * rstd * WEIGHT + BIAS with rstd = 1 / sqrt(var + EPS) (the biased
// variance, from the centred sum in a second pass), MEAN and RSTD (ROWS) kept for the backward pass.
void add_layer_norm_forward(const float* x, const float* residual, const float* weight, const float* bias, float* sum, float* y,
                            float* mean, float* rstd, int64_t rows, int64_t width, float eps);

// Its gradients given DY, from the norm's input X (the sum), WEIGHT, MEAN and RSTD: with
// xhat = (X - mean) * rstd and g = DY * WEIGHT,
//   DX = rstd * (g - mean(g) - xhat * mean(g * xhat)) [+ DSUM],
//   DWEIGHT += sum over the rows of DY * xhat,  DBIAS += sum over the rows of DY.
// DSUM (the sum's other gradient, else null) is added in the same pass; DX, DWEIGHT or DBIAS may be
// null (not wanted); DWEIGHT and DBIAS (WIDTH) are added to, not overwritten.
void layer_norm_backward(const float* dy, const float* dsum, const float* x, const float* weight, const float* mean,
                         const float* rstd, float* dx, float* dweight, float* dbias, int64_t rows, int64_t width);

// Rotary position embedding of one row of 2 * HALF floats, X's first half x1 and second half x2,
// with the row's angles' cosines COS and sines SIN (2 * HALF each), as fused_math.h's rotary_pair:
//   y1 = x1 * c1 - x2 * s1, y2 = x2 * c2 + x1 * s2; BACKWARD: y1 = x1 * c1 + x2 * s2, y2 = x2 * c2 - x1 * s1.
void rotary_row(const float* x, float* y, const float* cos, const float* sin, int64_t half, bool backward);

}  // namespace lofi::kernels::avx2
