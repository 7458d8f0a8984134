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

// Where a worker computes, and how the workers of its node all-reduce.
struct DevicePlan {
  torch::Device device = torch::kCPU;
  // Two workers of this node compute on one GPU. NCCL refuses two ranks of one group on one GPU,
  // so such a node all-reduces through Gloo, which stages CUDA tensors in host memory. The same
  // answer for every worker of the node.
  bool shares_gpu = false;
  std::string node_backend = "gloo";  // "nccl" (a GPU per worker of the node) or "gloo"
  std::string describe() const;       // e.g. "cuda:0, 4 workers of the node sharing it (Gloo)"
};

// The plan for the worker of LOCAL_RANK among LOCAL_WORLD_SIZE workers of this machine, rank
// NODE_RANK of a node of NODE_SIZE workers (consecutive ranks, as every launcher places them), with GPUS visible and
// CUDA_COMPILED telling whether this build has CUDA. A pure function, so tests can simulate any
// machine. SETTING: "auto" is CUDA when a GPU is visible (workers spread over the GPUs, LOCAL_RANK
// mod GPUS), else CPU; "cuda" is cuda:LOCAL_RANK (one GPU per worker of a machine, as torchrun);
// "cuda:K" pins every worker to GPU K; "cpu". Throws, naming KEY, where the device is absent.
// Hosts of one node are assumed to see the same number of GPUs.
DevicePlan plan_device(const std::string& setting, int local_rank, int local_world_size, int64_t node_rank,
                       int64_t node_size, int gpus, bool cuda_compiled, const std::string& key);

// The device of SETTING for the worker of LOCAL_RANK on this machine (plan_device's device, with
// the GPUs LibTorch sees).
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

// Makes DEVICE (a GPU) this thread's current CUDA device, as a torchrun script's
// torch.cuda.set_device(local_rank) does: what launches, allocations and NCCL take when they are
// not told a device. A worker calls it once it knows its GPU; nothing on a CPU.
void use_device(const torch::Device& device);

// The device of MODULE's first parameter (CPU for a module without parameters): where its inputs go.
torch::Device module_device(const torch::nn::Module& module);

// CUDA's side of the above (dist/cuda.cpp): compute capability major of GPU INDEX; CUDA and NCCL
// versions. Without CUDA compiled in: 0 and "".
int cuda_capability_major(int index);
std::string cuda_runtime_version();
std::string nccl_runtime_version();
// GPU INDEX's name, e.g. "NVIDIA H200"; "" without CUDA.
std::string cuda_device_name(int index);
// What the workers of a job of WORKERS workers per machine in nodes of NODE_SIZE run on with
// train.device = SETTING, on this machine, in words: "cpu (2 cores)", or "1 GPU (NVIDIA H200),
// shared by the 4 workers of each node: they all-reduce through Gloo".
std::string describe_placement(const std::string& setting, int workers, int64_t node_size);
// The CUDA caching allocator's peak of allocated bytes on GPU INDEX since the start or the last
// reset (what torch.cuda.max_memory_allocated reports); 0 without CUDA.
int64_t cuda_peak_allocated(int index);
// Bytes the caching allocator holds allocated on GPU INDEX now.
int64_t cuda_allocated(int index);
void cuda_reset_peak(int index);
// GPU INDEX's memory in bytes; 0 without CUDA.
int64_t cuda_total_memory(int index);

}  // namespace lofi::dist
