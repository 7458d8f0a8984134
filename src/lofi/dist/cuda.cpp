// Everything of lofi that includes CUDA's or NCCL's headers: the NCCL process group and the
// device facts behind dist/device.h. One file, compiled outside the precompiled header, so the
// rest of the library builds the same against a LibTorch with or without CUDA.
#include "lofi/dist/device.h"
#include "lofi/dist/process_groups.h"
#include "lofi/error.h"

#if LOFI_WITH_CUDA
#include <map>
#include <mutex>

#include <ATen/cuda/CUDAContextLight.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace lofi::dist {

#if LOFI_WITH_CUDA

// The copy runs on a side stream, so it starts at once instead of behind the compute the host has
// already queued (the host runs ahead of the GPU: nothing in a step waits for it); the compute
// stream waits for it only where the caller's next kernel needs the data. The device memory is
// marked used by the compute stream, so the caching allocator does not hand it out again before
// that stream is done with it; the pinned host memory is kept by the host allocator until the
// copy's stream has passed it. One side stream per device for every copy: the caching allocator
// keeps a freed block for the stream it was made on, so copies spread over the pool's 32 streams
// would each keep a batch's worth of device memory that the compute stream cannot reuse.
torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda() || !host.is_cpu()) return host.to(device);
  const torch::Tensor pinned = host.is_pinned() ? host : host.pin_memory();
  const c10::cuda::CUDAStream compute = c10::cuda::getCurrentCUDAStream(device.index());
  static std::mutex mutex;
  static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> side_streams;
  c10::cuda::CUDAStream side = compute;
  {
    std::lock_guard<std::mutex> hold(mutex);
    auto it = side_streams.find(device.index());
    if (it == side_streams.end())
      it = side_streams.emplace(device.index(), c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())).first;
    side = it->second;
  }
  torch::Tensor out;
  {
    c10::cuda::CUDAStreamGuard on_side(side);
    out = pinned.to(device, /*non_blocking=*/true);
  }
  at::cuda::CUDAEvent copied;
  copied.record(side);
  copied.block(compute);
  if (out.storage().data_ptr().get() != nullptr) c10::cuda::CUDACachingAllocator::recordStream(out.storage().data_ptr(), compute);
  return out;
}

void use_device(const torch::Device& device) {
  if (device.is_cuda()) c10::cuda::set_device(device.index());
}

int cuda_capability_major(int index) { return at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(index))->major; }

std::string cuda_runtime_version() { return cat(CUDART_VERSION / 1000, ".", CUDART_VERSION % 1000 / 10); }

std::string nccl_runtime_version() { return c10d::getNcclVersion(); }  // the NCCL LibTorch loaded

std::string cuda_device_name(int index) { return at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(index))->name; }

int64_t cuda_peak_allocated(int index) {
  using c10::CachingDeviceAllocator::StatType;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  return stats.allocated_bytes[static_cast<size_t>(StatType::AGGREGATE)].peak;
}

int64_t cuda_allocated(int index) {
  using c10::CachingDeviceAllocator::StatType;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  return stats.allocated_bytes[static_cast<size_t>(StatType::AGGREGATE)].current;
}

void cuda_reset_peak(int index) { c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(index)); }

int64_t cuda_total_memory(int index) {
  return static_cast<int64_t>(at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(index))->totalGlobalMem);
}

c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                  const std::string& prefix, int rank, int size, double timeout_s,
                                                  int device_index) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  auto scoped = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
  auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(scoped, rank, size, options);
  // Binding the device creates the communicator now (inside the rendezvous timeout) rather than
  // at the first gradient bucket.
  group->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)));
  group->eagerConnectSingleDevice(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)));
  return group;
}

bool is_nccl_work(const c10d::Work& work) { return dynamic_cast<const c10d::ProcessGroupNCCL::WorkNCCL*>(&work) != nullptr; }

#else

torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device) { return host.to(device); }

void use_device(const torch::Device&) {}

int cuda_capability_major(int) { return 0; }
std::string cuda_runtime_version() { return ""; }
std::string nccl_runtime_version() { return ""; }
std::string cuda_device_name(int) { return ""; }
int64_t cuda_peak_allocated(int) { return 0; }
int64_t cuda_allocated(int) { return 0; }
void cuda_reset_peak(int) {}
int64_t cuda_total_memory(int) { return 0; }

c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>&, const std::string&, int,
                                                  int, double, int) {
  fail("NCCL: this lofi was built against a LibTorch without CUDA; CUDA workers of one node cannot all-reduce");
}

bool is_nccl_work(const c10d::Work&) { return false; }

#endif

}  // namespace lofi::dist
