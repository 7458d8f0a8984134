// Compiled with -mavx2 -mfma and ATen's CPU_CAPABILITY=AVX2 (CMakeLists.txt), which selects
// Vectorized<float>'s AVX2 implementation, as ATen compiles its own AVX2 kernels. Nothing here may
// run before avx2_available() (kernels/cpu_avx2_dispatch.cpp, built without those flags) said yes.
#include <ATen/cpu/vec/vec.h>

#include "lofi/kernels/cpu_avx2.h"

namespace lofi::kernels::avx2 {
namespace {

using Vec = at::vec::Vectorized<float>;

// F over [0, n) in registers of Vec::size() floats, the tail through partial loads and stores.
template <typename F>
void over_registers(int64_t n, F f) {
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) f(i, Vec::size());
  if (i < n) f(i, n - i);
}

// sigmoid(g) as ATen's silu kernel forms it: 1 / (1 + exp(-g)), saturating to 0 and 1 at the tails.
Vec sigmoid(const Vec& g) { return Vec(1.0f) / (Vec(1.0f) + g.neg().exp()); }

}  // namespace

void swiglu_forward(const float* gate, const float* up, float* out, int64_t n) {
  over_registers(n, [&](int64_t i, int64_t count) {
    const Vec g = Vec::loadu(gate + i, count), u = Vec::loadu(up + i, count);
    (g * sigmoid(g) * u).store(out + i, count);
  });
}

void swiglu_backward(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n) {
  over_registers(n, [&](int64_t i, int64_t count) {
    const Vec d = Vec::loadu(dy + i, count), g = Vec::loadu(gate + i, count), u = Vec::loadu(up + i, count);
    const Vec s = sigmoid(g);
    (d * g * s).store(dup + i, count);
    (d * u * s * (Vec(1.0f) + g * (Vec(1.0f) - s))).store(dgate + i, count);
  });
}

}  // namespace lofi::kernels::avx2
