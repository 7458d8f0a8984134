// What the fused kernels (rotary.cpp, swiglu.cpp, rms_norm.cpp) need to launch their CUDA versions: whether
// this build has them, the element type, and a launch on the right device and stream with one
// clear error where it fails. Only device_launch.cpp includes CUDA's headers.
#pragma once
#include <torch/torch.h>

#include <functional>

#include "lofi/kernels/cuda/fused.h"

namespace lofi::kernels {

// Whether lofi was built with its CUDA kernels (nvcc found at configure time).
bool fused_cuda_built();

// The kernels' element type for T (fp32, bf16 or fp16); fails naming WHAT for another dtype.
cuda::Dtype cuda_dtype(const torch::Tensor& t, const char* what);

// Calls LAUNCH (a launcher of cuda/fused.h) with the current stream of T's device, that device made
// current for the call as ATen's own kernels do (a kernel launched from another device's context
// onto this stream would fail); fails naming WHAT where the launcher returns an error.
void launch_on(const torch::Tensor& t, const char* what, const std::function<const char*(void* stream)>& launch);

}  // namespace lofi::kernels
