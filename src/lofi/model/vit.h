// A Vision Transformer with the DeiT and DeiT-III options, equal in semantics to timm's
// VisionTransformer and VisionTransformerDistilled. Submodules are named so that
// named_parameters() gives timm's names ("blocks.0.attn.qkv.weight", ...): timm checkpoints load
// and exported weights load in timm without a renaming table. Checkpoint loading is in vit_checkpoint.h.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "lofi/model/block_runner.h"
#include "lofi/model/deferred_weights.h"
#include "lofi/model/linear.h"

namespace lofi::model {

struct VitConfig {
  int64_t image_size = 224;         // square input side in pixels, e.g. 224; a multiple of patch_size
  int64_t patch_size = 16;          // patch side in pixels, e.g. 16
  int64_t in_chans = 3;             // image channels, e.g. 3
  int64_t num_classes = 1000;       // classifier outputs, e.g. 1000 for ImageNet
  int64_t embed_dim = 768;          // token width C, e.g. 192 (DeiT-tiny), 768 (DeiT-base)
  int64_t depth = 12;               // transformer blocks, e.g. 12
  int64_t num_heads = 12;           // attention heads, e.g. 12; divides embed_dim
  double mlp_ratio = 4.0;           // MLP hidden width / embed_dim, e.g. 4
  bool qkv_bias = true;             // bias in the fused q/k/v projection, e.g. true
  bool class_token = true;          // prepend cls_token, e.g. true
  bool distilled = false;           // DeiT distillation: dist_token + head_dist, logits = mean of both heads
  bool no_embed_class = false;      // DeiT-III: pos_embed covers patches only, prefix tokens added after
  double init_values = 0.0;         // layer-scale init (ls1/ls2.gamma), e.g. 1e-6 for DeiT-III; 0 = none
  std::string global_pool = "token";  // "token" (class token) or "avg" (mean of patch tokens, then fc_norm)
  double drop_rate = 0.0;           // dropout before the head, e.g. 0
  double pos_drop_rate = 0.0;       // dropout after adding position embeddings, e.g. 0
  double proj_drop_rate = 0.0;      // dropout after attn.proj and in the MLP, e.g. 0
  double attn_drop_rate = 0.0;      // dropout on attention probabilities, e.g. 0
  double drop_path_rate = 0.0;      // stochastic depth of the last block, linear from 0 at block 0, e.g. 0.1

  int64_t grid_size() const { return image_size / patch_size; }            // e.g. 14
  int64_t num_patches() const { return grid_size() * grid_size(); }        // e.g. 196
  int64_t num_prefix_tokens() const { return (class_token ? 1 : 0) + (distilled ? 1 : 0); }
  // Rows of pos_embed: patches, plus prefix tokens unless no_embed_class.
  int64_t pos_embed_len() const { return num_patches() + (no_embed_class ? 0 : num_prefix_tokens()); }
};

// Throws lofi::Error naming the first inconsistent field.
void validate_vit_config(const VitConfig& c);

// timm's architectures by name: "deit_tiny_patch16_224", "deit_small_patch16_224",
// "deit_base_patch16_224", "deit_base_patch16_384", "deit_{tiny,small,base}_distilled_patch16_224",
// "deit3_{small,medium,base,large}_patch16_224", "vit_demo_patch4_32" (a small model for CPU demos)
// and "vit_test_patch8_32" (tests). Unknown names are errors listing the known ones.
VitConfig vit_config_preset(const std::string& name);
std::vector<std::string> vit_preset_names();

// Stochastic depth of each block: linear from 0 to drop_path_rate, as timm.
std::vector<double> vit_drop_path_rates(const VitConfig& c);

// Per-sample stochastic depth (timm's drop_path): in training, zeroes whole samples with
// probability P and scales the kept ones by 1 / (1 - P); identity in eval or at P = 0.
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training);

// timm's trunc_normal_: normal(MEAN, STD) truncated to [A, B] (absolute bounds), by inverse CDF.
// From GENERATOR where given, else the default stream.
void trunc_normal_(torch::Tensor t, double std, double mean = 0.0, double a = -2.0, double b = 2.0,
                   std::optional<at::Generator> generator = std::nullopt);

struct DropPathImpl : torch::nn::Module {
  explicit DropPathImpl(double p) : drop_prob(p) {}
  torch::Tensor forward(const torch::Tensor& x) { return drop_path(x, drop_prob, is_training()); }
  double drop_prob;
};
TORCH_MODULE(DropPath);

// Per-channel learned scale of a residual branch (CaiT / DeiT-III), timm's LayerScale.
struct LayerScaleImpl : torch::nn::Module {
  LayerScaleImpl(int64_t dim, double init_values);
  torch::Tensor forward(const torch::Tensor& x) { return x * gamma; }
  torch::Tensor gamma;  // (C)
};
TORCH_MODULE(LayerScale);

// Image to patch tokens: a stride-P convolution, flattened.
struct PatchEmbedImpl : torch::nn::Module {
  explicit PatchEmbedImpl(const VitConfig& c);
  torch::Tensor forward(const torch::Tensor& images);  // (B, in_chans, H, W) -> (B, N, C)
  int64_t image_size;
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

struct VitAttentionImpl : torch::nn::Module {
  explicit VitAttentionImpl(const VitConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C), bidirectional
  int64_t num_heads, head_dim;
  double attn_drop, proj_drop;
  Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(VitAttention);

struct VitMlpImpl : torch::nn::Module {
  explicit VitMlpImpl(const VitConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C), exact-erf GELU
  double drop;
  Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(VitMlp);

// Pre-norm block: x + drop_path(ls(attn(norm1(x)))), then the same with the MLP. ls1/ls2 and
// drop_path1/2 exist only when used, as timm's Identity placeholders have no parameters.
struct VitBlockImpl : torch::nn::Module {
  VitBlockImpl(const VitConfig& c, double drop_path_rate);
  torch::Tensor forward(torch::Tensor x);  // (B, T, C) -> (B, T, C)
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  VitAttention attn{nullptr};
  VitMlp mlp{nullptr};
  LayerScale ls1{nullptr}, ls2{nullptr};
  DropPath drop_path1{nullptr}, drop_path2{nullptr};
};
TORCH_MODULE(VitBlock);

struct VitImpl : torch::nn::Module {
  // Validates C, initialises as timm. Inside a MetaParameters scope (a fully sharded start built
  // in pieces) the blocks' linear layers are made on the meta device and their init left to
  // DEFERRED, each with the draws an ordinary build gives it.
  explicit VitImpl(const VitConfig& c, DeferredWeights* deferred = nullptr);
  torch::Tensor forward(const torch::Tensor& images);  // (B, in_chans, H, W) float -> logits (B, num_classes)
  torch::Tensor forward_features(const torch::Tensor& images);  // -> normed tokens (B, T, C)
  torch::Tensor forward_head(const torch::Tensor& tokens);      // (B, T, C) -> logits (B, num_classes)
  // Mean cross-entropy of LABELS (B) int64 given IMAGES.
  torch::Tensor loss(const torch::Tensor& images, const torch::Tensor& labels, double label_smoothing = 0.0);

  // timm's init: pos_embed and dist_token trunc_normal(.02), cls_token normal(1e-6), Linear
  // weights trunc_normal(.02) with zero biases, LayerNorm ones/zeros, layer scale init_values;
  // the patch convolution keeps PyTorch's default. Weights on the meta device go to DEFERRED.
  void init_weights(DeferredWeights* deferred = nullptr);
  // A fresh head (and head_dist) for the configured classes, initialised as init_weights does.
  void reset_classifier();

  VitConfig config;
  PatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token;   // (1, 1, C), when class_token
  torch::Tensor dist_token;  // (1, 1, C), when distilled
  torch::Tensor pos_embed;   // (1, pos_embed_len, C)
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};     // after the blocks (global_pool "token")
  torch::nn::LayerNorm fc_norm{nullptr};  // after pooling instead (global_pool "avg")
  torch::nn::Linear head{nullptr}, head_dist{nullptr};
  // Around each block's forward (block_runner.h: dist.shard = "full"); unset: none.
  BlockHooks block_hooks;
};
TORCH_MODULE(Vit);

}  // namespace lofi::model
