#include "lofi/kernels/autocast_operand.h"

#include <ATen/autocast_mode.h>

namespace lofi::kernels {

torch::Tensor autocast_operand(const torch::Tensor& t) {
  if (!t.defined()) return t;
  const c10::DeviceType device = t.device().type();
  if (!at::autocast::is_autocast_enabled(device)) return t;
  return at::autocast::cached_cast(at::autocast::get_autocast_dtype(device), t, device);
}

}  // namespace lofi::kernels
