// Compiled with -mavx2 -mfma and ATen's CPU_CAPABILITY=AVX2 (CMakeLists.txt), which selects
// Vectorized<float>'s AVX2 implementation, as ATen compiles its own AVX2 kernels. Nothing here may
// run before avx2_available() (kernels/cpu_avx2_dispatch.cpp, built without those flags) said yes.
#include <ATen/cpu/vec/vec.h>

#include <cmath>

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

// The sum of V's lanes, in a fixed order.
float lanes_sum(const Vec& v) {
  float lanes[Vec::size()];
  v.store(lanes);
  float total = 0.0f;
  for (float lane : lanes) total += lane;
  return total;
}

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

void rms_norm_forward(const float* x, const float* residual, const float* weight, float* sum, float* y, float* rstd,
                      int64_t rows, int64_t width, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    float* yr = y + r * width;
    Vec squares(0.0f);
    if (residual != nullptr) {
      // The sum first (the norm's input), written as it is formed.
      const float* rr = residual + r * width;
      float* hr = sum + r * width;
      over_registers(width, [&](int64_t i, int64_t count) {
        const Vec v = Vec::loadu(xr + i, count) + Vec::loadu(rr + i, count);  // zeros past a partial load's end
        v.store(hr + i, count);
        squares = at::vec::fmadd(v, v, squares);
      });
      xr = hr;
    } else {
      over_registers(width, [&](int64_t i, int64_t count) {
        const Vec v = Vec::loadu(xr + i, count);  // a partial load fills the rest with zeros
        squares = at::vec::fmadd(v, v, squares);
      });
    }
    const float inv = 1.0f / std::sqrt(lanes_sum(squares) / static_cast<float>(width) + eps);
    rstd[r] = inv;
    over_registers(width, [&](int64_t i, int64_t count) {
      (Vec::loadu(xr + i, count) * Vec(inv) * Vec::loadu(weight + i, count)).store(yr + i, count);
    });
  }
}

void rms_norm_backward(const float* dy, const float* dsum, const float* x, const float* weight, const float* rstd, float* dx,
                       float* dweight, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * width;
    const float* xr = x + r * width;
    const float inv = rstd[r];
    if (dx != nullptr) {
      Vec dot(0.0f);  // sum(g * x)
      over_registers(width, [&](int64_t i, int64_t count) {
        dot = at::vec::fmadd(Vec::loadu(dyr + i, count) * Vec::loadu(weight + i, count), Vec::loadu(xr + i, count), dot);
      });
      const Vec c(lanes_sum(dot) * inv * inv / static_cast<float>(width));
      float* dxr = dx + r * width;
      const float* dsr = dsum != nullptr ? dsum + r * width : nullptr;
      over_registers(width, [&](int64_t i, int64_t count) {
        const Vec g = Vec::loadu(dyr + i, count) * Vec::loadu(weight + i, count);
        const Vec d = (g - Vec::loadu(xr + i, count) * c) * Vec(inv);
        (dsr != nullptr ? d + Vec::loadu(dsr + i, count) : d).store(dxr + i, count);
      });
    }
    if (dweight != nullptr) {
      over_registers(width, [&](int64_t i, int64_t count) {
        const Vec sum = Vec::loadu(dweight + i, count) + Vec::loadu(dyr + i, count) * Vec::loadu(xr + i, count) * Vec(inv);
        sum.store(dweight + i, count);
      });
    }
  }
}

void add_layer_norm_forward(const float* x, const float* residual, const float* weight, const float* bias, float* sum, float* y,
                            float* mean, float* rstd, int64_t rows, int64_t width, float eps) {
  const float n = static_cast<float>(width);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    const float* rr = residual + r * width;
    float* hr = sum + r * width;
    float* yr = y + r * width;
    Vec total(0.0f);
    over_registers(width, [&](int64_t i, int64_t count) {
      const Vec v = Vec::loadu(xr + i, count) + Vec::loadu(rr + i, count);  // 0 + 0 past a partial load's end
      v.store(hr + i, count);
      total = total + v;
    });
    const float mu = lanes_sum(total) / n;
    Vec squares(0.0f);  // of the centred sum: two passes, as exact as the data allow
    over_registers(width, [&](int64_t i, int64_t count) {
      const Vec d = Vec::set(Vec(0.0f), Vec::loadu(hr + i, count) - Vec(mu), count);  // the tail's lanes stay 0
      squares = at::vec::fmadd(d, d, squares);
    });
    const float inv = 1.0f / std::sqrt(lanes_sum(squares) / n + eps);
    mean[r] = mu;
    rstd[r] = inv;
    over_registers(width, [&](int64_t i, int64_t count) {
      const Vec xhat = (Vec::loadu(hr + i, count) - Vec(mu)) * Vec(inv);
      at::vec::fmadd(xhat, Vec::loadu(weight + i, count), Vec::loadu(bias + i, count)).store(yr + i, count);
    });
  }
}

void layer_norm_backward(const float* dy, const float* dsum, const float* x, const float* weight, const float* mean,
                         const float* rstd, float* dx, float* dweight, float* dbias, int64_t rows, int64_t width) {
  const float n = static_cast<float>(width);
  for (int64_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * width;
    const float* xr = x + r * width;
    const Vec mu(mean[r]), inv(rstd[r]);
    if (dx != nullptr) {
      Vec g_sum(0.0f), gx_sum(0.0f);  // sum(g), sum(g * xhat); past a partial load's end g is 0
      over_registers(width, [&](int64_t i, int64_t count) {
        const Vec g = Vec::loadu(dyr + i, count) * Vec::loadu(weight + i, count);
        g_sum = g_sum + g;
        gx_sum = at::vec::fmadd(g, (Vec::loadu(xr + i, count) - mu) * inv, gx_sum);
      });
      const Vec a(lanes_sum(g_sum) / n), b(lanes_sum(gx_sum) / n);
      float* dxr = dx + r * width;
      const float* dsr = dsum != nullptr ? dsum + r * width : nullptr;
      over_registers(width, [&](int64_t i, int64_t count) {
        const Vec g = Vec::loadu(dyr + i, count) * Vec::loadu(weight + i, count);
        const Vec xhat = (Vec::loadu(xr + i, count) - mu) * inv;
        const Vec d = (g - a - xhat * b) * inv;
        (dsr != nullptr ? Vec::loadu(dsr + i, count) + d : d).store(dxr + i, count);
      });
    }
    if (dweight != nullptr || dbias != nullptr) {
      over_registers(width, [&](int64_t i, int64_t count) {
        const Vec d = Vec::loadu(dyr + i, count);
        if (dweight != nullptr) (Vec::loadu(dweight + i, count) + d * ((Vec::loadu(xr + i, count) - mu) * inv)).store(dweight + i, count);
        if (dbias != nullptr) (Vec::loadu(dbias + i, count) + d).store(dbias + i, count);
      });
    }
  }
}

void rotary_row(const float* x, float* y, const float* cos, const float* sin, int64_t half, bool backward) {
  over_registers(half, [&](int64_t i, int64_t count) {
    const Vec x1 = Vec::loadu(x + i, count), x2 = Vec::loadu(x + half + i, count);
    const Vec c1 = Vec::loadu(cos + i, count), s1 = Vec::loadu(sin + i, count);
    const Vec c2 = Vec::loadu(cos + half + i, count), s2 = Vec::loadu(sin + half + i, count);
    if (!backward) {
      (x1 * c1 - x2 * s1).store(y + i, count);
      (x2 * c2 + x1 * s2).store(y + half + i, count);
    } else {
      (x1 * c1 + x2 * s2).store(y + i, count);
      (x2 * c2 - x1 * s1).store(y + half + i, count);
    }
  });
}

}  // namespace lofi::kernels::avx2
