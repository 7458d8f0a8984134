// CUDA's headers for dist/cuda_graph.h, in a file of their own compiled outside the precompiled
// header (as dist/cuda.cpp), so the rest of the library builds the same with or without CUDA.
#include "lofi/dist/cuda_graph.h"

#include "lofi/error.h"

#if LOFI_WITH_CUDA
#include <map>
#include <mutex>
#include <string>

#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lofi::dist {

#if LOFI_WITH_CUDA

namespace {

// One side stream per device for every warm-up and capture: a capture needs a stream other than
// the default one, and what the warm-up made per stream is then there for the capture.
c10::cuda::CUDAStream capture_stream(const c10::Device& device) {
  static std::mutex mutex;
  static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
  std::lock_guard<std::mutex> hold(mutex);
  auto it = streams.find(device.index());
  if (it == streams.end())
    it = streams.emplace(device.index(), c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())).first;
  return it->second;
}

// Runs WORK with SIDE as the current stream, ordered after the current stream's queued work and
// before its next (torch.cuda.graph's pair of wait_stream calls).
void on_stream(const c10::cuda::CUDAStream& side, const std::function<void()>& work) {
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(side.device_index());
  at::cuda::CUDAEvent before;
  before.record(current);
  before.block(side);
  {
    c10::cuda::CUDAStreamGuard on_side(side);
    work();
  }
  at::cuda::CUDAEvent after;
  after.record(side);
  after.block(current);
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

struct CapturedWork::Impl {
  at::cuda::CUDAGraph graph;
};

CapturedWork::CapturedWork(const c10::Device& device, const std::function<void()>& work, const CapturedWork* share)
    : impl_(std::make_unique<Impl>()) {
  if (!device.is_cuda()) fail("internal: a CUDA graph records work on a GPU, not on ", device.str());
  c10::cuda::CUDAGuard on_device(device.index());
  // As torch.cuda.graph does: during a capture the caching allocator cannot give cached blocks
  // back to retry a failed allocation, so what the warm-up left cached goes first.
  c10::cuda::device_synchronize();
  c10::cuda::CUDACachingAllocator::emptyCache();
  std::string failed;
  on_stream(capture_stream(device), [&] {
    bool begun = false;
    try {
      // Thread-local mode: this thread is refused what would wait on the GPU while capturing;
      // another thread (a process group's watchdog) may still query its own events. (Autograd's
      // thread is not restricted by the mode, but a wait on the capture stream from it still
      // invalidates the capture, which capture_end then reports.)
      impl_->graph.capture_begin(share ? share->impl_->graph.pool() : c10::MempoolId_t{0, 0}, cudaStreamCaptureModeThreadLocal);
      begun = true;
      work();
    } catch (const std::exception& e) {
      failed = first_line(e.what());
    }
    if (!begun) return;
    try {
      impl_->graph.capture_end();  // ends the capture even where WORK failed, so the stream is usable again
    } catch (const std::exception& e) {
      if (failed.empty()) failed = first_line(e.what());
    }
  });
  if (!failed.empty()) fail("the work could not be recorded as a CUDA graph: ", failed);
}

CapturedWork::~CapturedWork() = default;

void CapturedWork::replay() { impl_->graph.replay(); }

void run_on_capture_stream(const c10::Device& device, const std::function<void()>& work) {
  if (!device.is_cuda()) return work();
  c10::cuda::CUDAGuard on_device(device.index());
  on_stream(capture_stream(device), work);
}

#else

struct CapturedWork::Impl {};

CapturedWork::CapturedWork(const c10::Device&, const std::function<void()>&, const CapturedWork*) {
  fail("CUDA graphs: this lofi was built against a LibTorch without CUDA");
}

CapturedWork::~CapturedWork() = default;

void CapturedWork::replay() {}

void run_on_capture_stream(const c10::Device&, const std::function<void()>& work) { work(); }

#endif

}  // namespace lofi::dist
