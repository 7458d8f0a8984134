// Whether kernels/cpu_avx2.cpp's loops may run: built into lofi (x86-64 builds) and supported by
// this CPU. Compiled with the ordinary flags, so asking is safe on any CPU.
#include "lofi/kernels/cpu_avx2.h"

namespace lofi::kernels::avx2 {

bool avx2_available() {
#if defined(LOFI_CPU_AVX2) && LOFI_CPU_AVX2 && (defined(__x86_64__) || defined(__i386__))
  static const bool available = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return available;
#else
  return false;
#endif
}

}  // namespace lofi::kernels::avx2
