// Loading timm-named ViT / DeiT checkpoints into lofi's Vit for fine-tuning: the classifier is
// re-initialised when the class count differs and the position embedding is resampled when the
// patch grid differs, as timm's checkpoint_filter_fn does. Export needs nothing: module_weights()
// of a Vit already carries timm's names.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "lofi/io/safetensors.h"
#include "lofi/model/vit.h"

namespace lofi::model {

// timm's resample_abs_pos_embed: POSEMB (1, prefix + oh*ow, C) keeps its NUM_PREFIX_TOKENS leading
// rows; the rest, as a (1, C, oh, ow) grid, is resized to NEW_SIZE {h, w} by bicubic interpolation
// with antialias (align_corners false) in float32, then flattened back to (1, prefix + h*w, C)
// in POSEMB's dtype. Returned unchanged when the grid is unchanged.
torch::Tensor resample_abs_pos_embed(const torch::Tensor& posemb, std::array<int64_t, 2> new_size,
                                     std::array<int64_t, 2> old_size, int64_t num_prefix_tokens);

// Copies timm-named TENSORS (SOURCE names them in errors) into MODEL, converting dtype:
//  - a leading "module." or "model." shared by every name is stripped;
//  - head / head_dist with another class count are not loaded: the model's head is re-initialised;
//  - pos_embed of another square grid is resampled to the model's grid (resample_abs_pos_embed);
//  - any other missing tensor, shape mismatch or tensor that is not a parameter is an error naming it.
// Returns one-line notices of what was adapted (empty when the checkpoint fitted as is);
// HEAD_REINITIALISED, when given, says whether the head was re-initialised rather than loaded.
// Parameters on the meta device (a model built in pieces) are left to DEFERRED, reading the
// tensors when filled: their memory (a mapped file) must live until then (DeferredWeights::keep).
std::vector<std::string> load_vit_checkpoint(Vit& model, const io::NamedTensors& tensors, const std::string& source,
                                             bool* head_reinitialised = nullptr, DeferredWeights* deferred = nullptr);
std::vector<std::string> load_vit_checkpoint(Vit& model, const io::SafetensorsFile& file, bool* head_reinitialised = nullptr,
                                             DeferredWeights* deferred = nullptr);

}  // namespace lofi::model
