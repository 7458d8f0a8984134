// CUDA graphs (train.cuda_graphs): GPU work recorded once and replayed as one launch, so a step's
// thousands of small kernels cost the host one call. Through LibTorch's at::cuda::CUDAGraph, which
// gives a capture's tensors a private pool of the caching allocator and keeps the default RNG's
// Philox offsets right on each replay (dropout draws what it would eagerly, from the seed set
// before the replay). A replay reads and writes the addresses the capture saw: what changes from
// one replay to the next (a batch, the learning rate, the step number) must be copied into tensors
// the capture read, never put in new ones.
#pragma once
// (c10's Device alone: the file that includes CUDA's headers builds outside the precompiled header.)
#include <c10/core/Device.h>

#include <functional>
#include <memory>

namespace lofi::dist {

class CapturedWork {
 public:
  // Records WORK on DEVICE's capture stream (the capture runs nothing: replay() does), after
  // waiting for the GPU and emptying the caching allocator's cache (a capture cannot). Its tensors
  // come from the pool of SHARE (a graph captured before this one and replayed before it each
  // time), else from a pool of its own. Throws, saying what CUDA refused, where WORK cannot be
  // captured (it waits for the GPU, or reads a value to the host). After such a failure the
  // allocator and the RNG may still be in capture mode: the caller stops; it never goes on eagerly.
  CapturedWork(const c10::Device& device, const std::function<void()>& work, const CapturedWork* share = nullptr);
  ~CapturedWork();
  CapturedWork(const CapturedWork&) = delete;
  CapturedWork& operator=(const CapturedWork&) = delete;
  // Runs the recorded work on the current stream.
  void replay();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Runs WORK eagerly on DEVICE's capture stream, after what the current stream has queued and
// before what it queues next: a warm-up, so what WORK makes on first use (gradients, optimizer
// state, cuBLAS's workspace for that stream) exists before a capture of it.
void run_on_capture_stream(const c10::Device& device, const std::function<void()>& work);

}  // namespace lofi::dist
