// Which device a worker computes on, and what this build and machine offer: train.device
// ("auto" | "cpu" | "cuda" | "cuda:K") resolved against the GPUs LibTorch sees, and
// train.precision ("fp32" | "bf16") checked against the device.
#pragma once
#include <torch/torch.h>

#include <string>

namespace lofi::dist {

struct BuildInfo {
  std::string libtorch;       // e.g. "2.11.0"
  bool cuda_compiled = false; // LibTorch and lofi were built with CUDA
  bool nccl_compiled = false; // ... and c10d's NCCL process group
  std::string cuda_version;   // CUDA runtime lofi was compiled against, e.g. "13.0"; "" without
  std::string nccl_version;   // NCCL that LibTorch loads at run time, e.g. "2.28.9"; "" without a GPU
  int gpus = 0;               // CUDA devices visible now
  bool cuda_available() const { return gpus > 0; }
};
BuildInfo build_info();

// SETTING for the worker of LOCAL_RANK: "auto" is CUDA when a GPU is visible, else CPU; "cuda" is
// cuda:LOCAL_RANK (one GPU per worker of a machine, as torchrun); "cuda:K" pins every worker to GPU
// K (single-worker lo-fi nodes sharing one GPU). Throws, naming KEY, where the device is absent.
torch::Device resolve_device(const std::string& setting, int local_rank, const std::string& key);

// Throws, naming KEY, when PRECISION ("fp32" or "bf16") cannot run on DEVICE.
void check_precision(const std::string& precision, const torch::Device& device, const std::string& key);

// While alive, PRECISION "bf16" autocasts DEVICE's matmuls and attention to bf16 on this thread
// (fp32 parameters, fp32 reductions, as torch.autocast); "fp32" does nothing. Scope it over the
// forward pass and loss, not backward. Leaving the outermost guard drops autocast's cache of
// cast weights, so the next step casts the updated ones.
class PrecisionGuard {
 public:
  PrecisionGuard(const torch::Device& device, const std::string& precision);
  ~PrecisionGuard();
  PrecisionGuard(const PrecisionGuard&) = delete;
  PrecisionGuard& operator=(const PrecisionGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType type_;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_;
};

// HOST's data on DEVICE: for CUDA through pinned memory and a non-blocking copy (the copy overlaps
// the work queued before it; the caller's next kernel on the stream waits for it).
torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device);

// The device of MODULE's first parameter (CPU for a module without parameters): where its inputs go.
torch::Device module_device(const torch::nn::Module& module);

// CUDA's side of the above (dist/cuda.cpp): compute capability major of GPU INDEX; CUDA and NCCL
// versions. Without CUDA compiled in: 0 and "".
int cuda_capability_major(int index);
std::string cuda_runtime_version();
std::string nccl_runtime_version();

}  // namespace lofi::dist
