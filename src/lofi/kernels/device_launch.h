// What the fused kernels (rotary.cpp, swiglu.cpp) need to launch their CUDA versions: whether
// this build has them, the element type, the current stream, and one clear error for a failed
// launch. Only device_launch.cpp includes CUDA's headers.
#pragma once
#include <torch/torch.h>

#include "lofi/kernels/cuda/fused.h"

namespace lofi::kernels {

// Whether lofi was built with its CUDA kernels (nvcc found at configure time).
bool fused_cuda_built();

// The kernels' element type for T (fp32, bf16 or fp16); fails naming WHAT for another dtype.
cuda::Dtype cuda_dtype(const torch::Tensor& t, const char* what);

// The current CUDA stream of T's device, as the launchers take it.
void* cuda_stream(const torch::Tensor& t);

// Fails naming WHAT when ERROR (a launcher's result) is not null.
void check_launch(const char* error, const char* what);

}  // namespace lofi::kernels
