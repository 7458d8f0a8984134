#include "lofi/kernels/device_launch.h"

#include "lofi/error.h"

#if LOFI_FUSED_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lofi::kernels {

bool fused_cuda_built() { return LOFI_FUSED_CUDA != 0; }

cuda::Dtype cuda_dtype(const torch::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case torch::kFloat: return cuda::Dtype::f32;
    case torch::kBFloat16: return cuda::Dtype::bf16;
    case torch::kHalf: return cuda::Dtype::f16;
    default: fail(what, ": the fused kernel takes fp32, bf16 or fp16 tensors, found ", t.scalar_type());
  }
}

void launch_on(const torch::Tensor& t, const char* what, const std::function<const char*(void* stream)>& launch) {
#if LOFI_FUSED_CUDA
  const c10::cuda::CUDAGuard on_device(t.device());
  if (const char* error = launch(c10::cuda::getCurrentCUDAStream(t.device().index()).stream()))
    fail(what, ": the CUDA kernel failed to launch: ", error);
#else
  (void)launch;
  fail(what, ": lofi was built without its CUDA kernels (no nvcc at configure time); cannot run one on ", t.device());
#endif
}

#if !LOFI_FUSED_CUDA
// Built without nvcc: the launchers exist so the library links; rotary(), swiglu(),
// add_rms_norm() and add_layer_norm() never call them (they run LibTorch's composite on a GPU
// when fused_cuda_built() is false).
namespace cuda {
namespace {
const char* kNotBuilt = "lofi was built without its CUDA kernels (no nvcc at configure time)";
}
const char* rotary(Dtype, const void*, void*, const RotaryShape&, const float*, const float*, bool, void*) { return kNotBuilt; }
const char* swiglu_forward(Dtype, const void*, const void*, void*, int64_t, void*) { return kNotBuilt; }
const char* swiglu_backward(Dtype, const void*, const void*, const void*, void*, void*, int64_t, void*) { return kNotBuilt; }
const char* add_rms_norm_forward(Dtype, const float*, const void*, const float*, float*, float*, float*, int64_t, int64_t, float,
                                 void*) {
  return kNotBuilt;
}
const char* rms_norm_backward(const float*, const float*, const float*, const float*, const float*, float*, float*, int, int64_t,
                              int64_t, void*) {
  return kNotBuilt;
}
const char* add_layer_norm_forward(Dtype, const float*, const void*, const float*, const float*, float*, float*, float*, float*,
                                   int64_t, int64_t, float, void*) {
  return kNotBuilt;
}
const char* layer_norm_backward(const float*, const float*, const float*, const float*, const float*, const float*, float*, float*,
                                float*, int, int64_t, int64_t, void*) {
  return kNotBuilt;
}
}  // namespace cuda
#endif

}  // namespace lofi::kernels
