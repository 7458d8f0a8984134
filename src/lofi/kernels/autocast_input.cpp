#include "lofi/kernels/autocast_input.h"

#include <ATen/autocast_mode.h>

namespace lofi::kernels {

torch::Tensor autocast_input(const torch::Tensor& x) {
  const c10::DeviceType device = x.device().type();
  // Autocast casts fp32 operands of its lower-precision ops (float64 ones stay, as here).
  if (x.scalar_type() != torch::kFloat || !at::autocast::is_autocast_enabled(device)) return x;
  return x.to(at::autocast::get_autocast_dtype(device));
}

}  // namespace lofi::kernels
