// The linear layers the architectures are built from, each able to carry a low-rank adapter
// (LoRA, Hu et al. 2021) the way PEFT's lora.Linear wraps one:
//   Linear:  y = x W^T + b, W (out, in), as torch::nn::Linear (the same parameter names);
//   Conv1D:  y = x W + b,   W (in, out), GPT-2's layout as Hugging Face stores it.
// With an adapter, y += scaling * B(A(dropout(x))), A (r, in) and B (out, r) registered as the
// submodules "lora_A" and "lora_B", so the parameters are named as PEFT names them
// ("...q_proj.lora_A.weight"). The base weight may be held in another dtype (a frozen bf16 base):
// the input is cast to it for the base product, and the adapter computes in its own dtype (fp32).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace lofi::model {

struct AdaptableLinearImpl : torch::nn::Module {
  // (..., in) -> (..., out): the base product, plus the adapter's when one is attached.
  torch::Tensor forward(const torch::Tensor& x);
  // ACTIVATION (model/blocks.h's names) of forward(x). ReLU after a biased product without an
  // adapter is one fused product (kernels/linear_relu.h); anything else is the two steps.
  torch::Tensor forward_activated(const torch::Tensor& x, const std::string& activation);

  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // W in (out, in) layout whatever the storage, and the inverse for a delta of that layout.
  virtual torch::Tensor weight_out_in() const = 0;
  virtual torch::Tensor to_storage_layout(const torch::Tensor& out_in) const = 0;
  // Conv1D stores (in, out): PEFT's fan_in_fan_out.
  virtual bool fan_in_fan_out() const = 0;

  // Attaches (or replaces) an adapter of RANK with SCALING and DROPOUT; A and B are left
  // uninitialised (lora.cpp initialises them as PEFT does).
  void attach_lora(int64_t rank, double scaling, double dropout);
  bool has_lora() const { return !lora_A.is_empty(); }
  int64_t lora_rank() const { return has_lora() ? lora_A->weight.size(0) : 0; }
  // scaling * B A: the adapter's change to W, (out, in), fp32.
  torch::Tensor lora_delta() const;

  torch::Tensor weight, bias;
  // false: no adapter is ever attached, and LoRA's targets do not see the layer (a mixture of
  // experts' router and experts, model/moe.h).
  bool adaptable = true;
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};  // (r, in) and (out, r), no bias
  double lora_scaling = 0, lora_dropout = 0;

 protected:
  virtual torch::Tensor base(const torch::Tensor& x) const = 0;  // (..., in) -> (..., out)

 private:
  // base(X) with X cast to the weight's dtype and the result back to X's (outside autocast), the
  // products in fp32 where the CPU lacks fast ones in the weight's dtype (kernels/fp32_products.h).
  torch::Tensor base_product(const torch::Tensor& x) const;
};

struct LinearImpl : AdaptableLinearImpl {
  LinearImpl(int64_t in, int64_t out, bool with_bias = true);
  int64_t in_features() const override { return weight.size(1); }
  int64_t out_features() const override { return weight.size(0); }
  torch::Tensor weight_out_in() const override { return weight; }
  torch::Tensor to_storage_layout(const torch::Tensor& out_in) const override { return out_in; }
  bool fan_in_fan_out() const override { return false; }

 protected:
  torch::Tensor base(const torch::Tensor& x) const override;
};
TORCH_MODULE(Linear);

struct Conv1DImpl : AdaptableLinearImpl {
  Conv1DImpl(int64_t in, int64_t out);
  int64_t in_features() const override { return weight.size(0); }
  int64_t out_features() const override { return weight.size(1); }
  torch::Tensor weight_out_in() const override { return weight.t(); }
  torch::Tensor to_storage_layout(const torch::Tensor& out_in) const override { return out_in.t(); }
  bool fan_in_fan_out() const override { return true; }

 protected:
  torch::Tensor base(const torch::Tensor& x) const override;
};
TORCH_MODULE(Conv1D);

}  // namespace lofi::model
