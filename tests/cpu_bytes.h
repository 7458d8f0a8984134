// Bytes held by CPU tensors, counted by wrapping c10's CPU allocator (every CPU tensor's storage
// comes from it) while a CpuBytes is alive: tests of what a forward pass keeps for its backward.
#pragma once
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

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

}  // namespace lofi::test
