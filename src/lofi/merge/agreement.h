// How far a job's nodes agreed: per tensor (per adapted layer for LoRA), the mean cosine between
// the nodes' changes from where they started, over every pair of nodes: the quantity Model Stock
// (methods/model_stock.cpp) sets its interpolation by. Near 1: the nodes moved alike and their
// average keeps what each learned; near 0: their changes are orthogonal and the average shrinks
// them by about 1/N. Free to compute at the end of a job: it reads what the merge read.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/io/lora_adapter.h"

namespace lofi::merge {

// FINALS' changes from BASE (a safetensors file, index or Hugging Face directory), tensor by
// tensor; tensors the base lacks or that did not change are left out. Returns {"mean": m,
// "lowest": {"tensor": name, "cosine": c}, "tensors": {name: c, ...}}; null with fewer than 2 finals.
nlohmann::json delta_agreement(const std::vector<std::string>& finals, const std::string& base);

// The same for LoRA nodes: each layer's change s B A, the cosines through the factors' Gram
// matrices (no d x d product).
nlohmann::json adapter_agreement(const std::vector<io::LoraAdapter>& adapters);

// "nodes' changes agree: mean cosine 0.83 over 24 tensors (lowest 0.41, TENSOR)", or "".
std::string agreement_text(const nlohmann::json& agreement);

}  // namespace lofi::merge
