// The matrix products a piece of code runs with bf16 operands, seen through PyTorch's own op
// observers (RecordFunction, what torch.profiler records): mm, addmm, bmm, linear, matmul,
// convolutions and attention, forward and backward (a CPU graph's backward runs on the calling
// thread). Tests hold the fp32-product paths (kernels/fp32_products.h) to taking every product
// where this CPU's bf16 products would run ATen's reference loop.
#pragma once
#include <ATen/record_function.h>
#include <torch/torch.h>

#include <set>
#include <string>

namespace lofi::test {

// While alive, records on this thread the names of product ops that take a bf16 tensor.
class Bf16Products {
 public:
  Bf16Products() : handle_(at::addThreadLocalCallback(at::RecordFunctionCallback(&note).needsInputs(true))) { seen() = {}; }
  ~Bf16Products() { at::removeCallback(handle_); }
  Bf16Products(const Bf16Products&) = delete;
  Bf16Products& operator=(const Bf16Products&) = delete;
  const std::set<std::string>& names() const { return seen(); }

 private:
  static std::set<std::string>& seen() {
    thread_local std::set<std::string> names;
    return names;
  }
  static bool is_product(const std::string& name) {
    for (const char* part : {"mm", "linear", "matmul", "conv", "scaled_dot_product", "attention"})
      if (name.find(part) != std::string::npos) return true;
    return false;
  }
  static std::unique_ptr<at::ObserverContext> note(const at::RecordFunction& fn) {
    const std::string name = fn.name();
    if (!is_product(name)) return nullptr;
    for (const c10::IValue& v : fn.inputs())
      if (v.isTensor() && v.toTensor().defined() && v.toTensor().scalar_type() == torch::kBFloat16) seen().insert(name);
    return nullptr;
  }
  at::CallbackHandle handle_;
};

}  // namespace lofi::test
