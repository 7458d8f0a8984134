// Bytes held by CPU tensors, counted by wrapping c10's CPU allocator (every CPU tensor's storage
// comes from it) while a CpuBytes is alive: tests of what a forward pass keeps for its backward.
#pragma once
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include "lofi/dist/device.h"

#include <atomic>
#include <cstring>
#include <memory>

namespace lofi::test {

class CpuBytes : public c10::Allocator {
 public:
  CpuBytes() : inner_(c10::GetCPUAllocator()) { c10::SetCPUAllocator(this, kPriority); }
  ~CpuBytes() override { c10::SetCPUAllocator(inner_, kPriority); }
  CpuBytes(const CpuBytes&) = delete;
  CpuBytes& operator=(const CpuBytes&) = delete;

  // Bytes allocated while counting and not yet freed.
  int64_t live() const { return *live_; }

  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr inner = inner_->allocate(n);
    void* data = inner.get();
    *live_ += static_cast<int64_t>(n);
    // The count is shared, so a tensor freed after this counter still finds it.
    auto* held = new Held{std::move(inner), static_cast<int64_t>(n), live_};
    return {data, held, &release, c10::Device(c10::DeviceType::CPU)};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

 private:
  struct Held {
    c10::DataPtr inner;
    int64_t bytes;
    std::shared_ptr<std::atomic<int64_t>> live;
  };
  static void release(void* p) {
    auto* held = static_cast<Held*>(p);
    *held->live -= held->bytes;
    delete held;
  }
  static constexpr uint8_t kPriority = 200;  // above the default allocator's
  c10::Allocator* inner_;
  std::shared_ptr<std::atomic<int64_t>> live_ = std::make_shared<std::atomic<int64_t>>(0);
};

// What FORWARD(x) keeps besides its output under CPU bf16 autocast because X is fp32: the bytes it
// leaves allocated for an fp32 X less those for the same X already in bf16, each made before
// counting and, as a block's activations are, not a leaf (autocast caches the casts of leaves).
template <typename F>
int64_t kept_for_an_fp32_input(F forward, const torch::Tensor& x) {
  auto kept = [&](const torch::Tensor& input) {
    dist::PrecisionGuard bf16(torch::kCPU, "bf16");
    CpuBytes bytes;
    const torch::Tensor y = forward(input);
    return bytes.live() - static_cast<int64_t>(y.nbytes());
  };
  auto activation = [](const torch::Tensor& t) { return t.detach().requires_grad_(true).clone(); };
  return kept(activation(x)) - kept(activation(x.to(torch::kBFloat16)));
}

}  // namespace lofi::test
