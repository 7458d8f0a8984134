// A bf16 or fp16 linear layer on a CPU whose PyTorch has no fast matrix product in that dtype:
// x W^T + b with the products computed in fp32 from the same values, rounded once to the inputs'
// dtype, as PyTorch's own bf16 product rounds its fp32 sums. Without AVX-512 (oneDNN's bf16 path
// needs avx512bw, avx512vl and avx512dq), ATen multiplies bf16 matrices in a reference loop:
// measured on a 2-core AVX2 CPU at (2048, 512) x (512, 1408), the forward product took 0.24 s
// against fp32's 0.036 s and the input's gradient (g W, neither transposed) 3.56 s against 0.032 s,
// so a LoRA step over a bf16 base ran at 18 tokens/s where the fp32 base ran 1012. Only the inputs
// are kept for the backward pass (the fp32 copies are made again there), so a frozen bf16 base
// still costs 2 bytes a weight between forward and backward. Under bf16 autocast on such a CPU
// (train.precision = "bf16") every product would run that loop: linear and attention here take
// autocast's casts and dtype and compute their products in fp32 with autocast set aside for them.
#pragma once
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/torch.h>

#include <functional>
#include <optional>

namespace lofi::kernels {

// Whether this CPU has what PyTorch's fast bf16 and fp16 products need (on x86, avx512bw, avx512vl
// and avx512dq, as its oneDNN path asks; other processors: assumed so).
bool cpu_has_fast_low_precision_products();

// While alive, the CPU's autocast leaves this thread's ops alone (as autocast's own kernels set
// themselves aside), so fp32 products stay fp32.
struct NoCpuAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::DispatchKey::AutocastCPU};
};

// Whether a product over WEIGHT should go through linear_with_fp32_products: a bf16 or fp16 CPU
// tensor where this CPU lacks the instructions PyTorch's fast product in that dtype needs.
bool wants_fp32_products(const torch::Tensor& weight);

// Whether autocast is on for DEVICE in bf16 or fp16 where this CPU lacks fast products in that
// dtype (autocast would send every product to ATen's reference loop).
bool autocast_wants_fp32_products(c10::DeviceType device);

// Whether a linear layer's product of X and WEIGHT goes through fp32 products: under autocast,
// autocast_wants_fp32_products for X's device; outside it, wants_fp32_products(WEIGHT).
bool linear_wants_fp32_products(const torch::Tensor& x, const torch::Tensor& weight);

// X (..., in), WEIGHT (out, in) (any strides), BIAS (out) or undefined, one dtype. Returns
// (..., out) in that dtype, differentiable in all three. Autocast is set aside for its products.
torch::Tensor linear_with_fp32_products(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

// torch::linear(X, WEIGHT, BIAS) as it runs here (under autocast: its casts, weights from its cache,
// the output in its dtype), the products in fp32 where linear_wants_fp32_products says so. Outside
// autocast X and WEIGHT share a dtype.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});

// ATTEND(Q, K, V) as it runs here (under autocast: in its dtype), in fp32 from the same values
// with autocast set aside, the output rounded once, where the heads' dtype (autocast's, else Q's)
// is bf16 or fp16 on a CPU without fast products in it.
using Attention = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>;
torch::Tensor attention_with_fp32_products(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const Attention& attend);

// torch::scaled_dot_product_attention through attention_with_fp32_products.
torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const std::optional<torch::Tensor>& mask, double dropout, bool is_causal,
                                           std::optional<double> scale, bool grouped);

// torch::conv2d(X, WEIGHT, BIAS, STRIDE) without padding (a patch embedding) as it runs here, in
// fp32 from autocast's bf16 or fp16 values, the output rounded once, where
// autocast_wants_fp32_products for X's device (measured on a 2-core AVX2 CPU: ViT-Tiny's patch
// embedding of 8 images, forward and backward, 0.22 s in bf16 against 0.04 s in fp32).
torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, torch::IntArrayRef stride);

}  // namespace lofi::kernels
