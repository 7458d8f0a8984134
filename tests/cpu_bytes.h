// Bytes held by CPU tensors, counted by an allocator set in place of c10's CPU allocator (every CPU
// tensor's storage comes from it) while a CpuBytes is alive: tests of what a forward pass keeps
// for its backward.
#pragma once
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/torch.h>

#include "lofi/dist/device.h"

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace lofi::test {

class CpuBytes : public c10::Allocator {
 public:
  CpuBytes() : inner_(c10::GetCPUAllocator()) { c10::SetCPUAllocator(this, kPriority); }
  ~CpuBytes() override { c10::SetCPUAllocator(inner_, kPriority); }
  CpuBytes(const CpuBytes&) = delete;
  CpuBytes& operator=(const CpuBytes&) = delete;

  // Bytes allocated while counting and not yet freed.
  int64_t live() const { return *live_; }

  // Memory from c10's alloc_cpu, as the default CPU allocator's, freed by free_cpu through either
  // allocator's deleter; the data pointer is also the context, as raw_allocate needs (oneDNN's ops
  // on a CPU with AVX-512 take scratch memory that way, and free it through whichever allocator is
  // set when they do).
  c10::DataPtr allocate(size_t n) override {
    void* data = c10::alloc_cpu(n);
    if (data != nullptr) {
      const std::lock_guard<std::mutex> lock(table().mutex);
      // The count is shared, so a tensor freed after this counter still finds it. An entry of the
      // same address is one freed through the default allocator's deleter: replaced.
      table().held[data] = Held{static_cast<int64_t>(n), live_};
      *live_ += static_cast<int64_t>(n);
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

 private:
  struct Held {
    int64_t bytes;
    std::shared_ptr<std::atomic<int64_t>> live;
  };
  struct Table {
    std::mutex mutex;
    std::unordered_map<void*, Held> held;  // by data pointer
  };
  static Table& table() {
    static Table* t = new Table;  // never destroyed: tensors freed at exit still find it
    return *t;
  }
  // Frees what this allocator counted, and what the default allocator made (not in the table).
  static void release(void* data) {
    {
      const std::lock_guard<std::mutex> lock(table().mutex);
      auto it = table().held.find(data);
      if (it != table().held.end()) {
        *it->second.live -= it->second.bytes;
        table().held.erase(it);
      }
    }
    c10::free_cpu(data);
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
