// Averages of LoRA adapters trained from one base and one initialisation (lo-fi's nodes). The
// average of the dense changes (1/N) sum_i s B_i A_i is not the product of averaged factors, so:
//   concat   the exact average as one adapter of rank N r: A stacked, B side by side scaled 1/N,
//            the scaling kept; still a PEFT adapter (PEFT's add_weighted_adapter "cat" computes
//            the same change);
//   svd R    that exact average brought to rank R through QR of the stacked factors and an SVD of
//            the small (N r x N r) core: never a d x d matrix; reports the relative error it left;
//   factors  the per-factor average (federated averaging of LoRA, PEFT's "linear" with weights
//            1 / N^2): rank r, not the average; reports its error against the exact one.
// (The dense merge, the exact average folded into the base, needs the base model: family/.)
// Tensors trained whole (modules_to_save) are averaged as they are in every mode.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/io/lora_adapter.h"

namespace lofi::merge {

enum class AdapterMergeMode { concat, svd, factors };

struct AdapterMergeOptions {
  AdapterMergeMode mode = AdapterMergeMode::concat;
  int64_t svd_rank = 0;  // svd's R
  bool force = false;    // merge adapters whose rank, targets, alpha or base differ
};

struct AdapterMergeResult {
  io::LoraAdapter adapter;
  // Per adapted layer, the relative Frobenius error against the exact average (svd, factors),
  // and the largest: {"max": e, "layers": {"...q_proj": e, ...}}; null for concat.
  nlohmann::json error;
};

// Why ADAPTERS cannot be averaged (rank, alpha, rslora, targets, modules, tensors or base
// differ), or "": the first adapter against each other.
std::string adapter_mismatch(const std::vector<io::LoraAdapter>& adapters);

AdapterMergeResult merge_adapters(const std::vector<io::LoraAdapter>& adapters, const AdapterMergeOptions& options);

// "concat", "svd" or "factors" -> the mode; SOURCE names the flag in errors.
AdapterMergeMode adapter_merge_mode(const std::string& name, const std::string& source);

// || (1/N) sum_i s B_i A_i ||_F of one layer's factors, without forming the product: the
// Gram matrices of the stacked factors. Exposed for tests.
double low_rank_frobenius(const torch::Tensor& b, const torch::Tensor& a);  // || B A ||_F, B (out, K), A (K, in)

}  // namespace lofi::merge
