// The Vision Transformer of vit.h: timm's VisionTransformer (DeiT, DeiT-III options) and
// VisionTransformerDistilled, block by block, with timm's initialisation and named presets.
#include "lofi/model/vit.h"

#include <cmath>
#include <map>

#include "lofi/error.h"
#include "lofi/io/process.h"
#include "lofi/kernels/autocast_operand.h"
#include "lofi/kernels/fp32_products.h"
#include "lofi/model/blocks.h"

namespace lofi::model {

namespace nn = torch::nn;

namespace {

constexpr double kLayerNormEps = 1e-6;  // timm's ViT LayerNorm (PyTorch's default is 1e-5)

nn::LayerNorm layer_norm(int64_t dim) { return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(kLayerNormEps)); }

void init_linear(torch::Tensor& weight, torch::Tensor& bias) {
  torch::NoGradGuard no_grad;
  trunc_normal_(weight, 0.02);
  if (bias.defined()) bias.zero_();
}
void init_linear(nn::LinearImpl& linear) { init_linear(linear.weight, linear.bias); }

// Built in pieces: LINEAR's weight (named NAME.weight) is the ordinary init's truncated-normal
// draw, deferred (DeferredWeights::defer_draw); the bias is zero.
void defer_init_linear(AdaptableLinearImpl& linear, const std::string& name, DeferredWeights* deferred) {
  if (!deferred) fail("internal: parameter '", name, ".weight' has no memory to initialise");
  deferred->defer_draw(linear.weight, name + ".weight",
                       [](const torch::Tensor& into, const at::Generator& stream) { trunc_normal_(into, 0.02, 0.0, -2.0, 2.0, stream); });
  if (linear.bias.defined()) deferred->defer(linear.bias, name + ".bias", [](const torch::Tensor& into) { into.zero_(); });
}

// register_module the first time, replace_module after (reset_classifier on a built model).
template <typename Holder>
Holder set_module(torch::nn::Module& parent, const std::string& name, Holder module) {
  return parent.named_children().contains(name) ? parent.replace_module(name, module)
                                                : parent.register_module(name, module);
}

const std::map<std::string, VitConfig>& presets() {
  static const std::map<std::string, VitConfig> table = [] {
    auto make = [](int64_t dim, int64_t depth, int64_t heads) {
      VitConfig c;
      c.embed_dim = dim;
      c.depth = depth;
      c.num_heads = heads;
      return c;
    };
    std::map<std::string, VitConfig> t;
    t["deit_tiny_patch16_224"] = make(192, 12, 3);
    t["deit_small_patch16_224"] = make(384, 12, 6);
    t["deit_base_patch16_224"] = make(768, 12, 12);
    t["deit_base_patch16_384"] = make(768, 12, 12);
    t["deit_base_patch16_384"].image_size = 384;
    for (const char* size : {"tiny", "small", "base"}) {
      VitConfig c = t[cat("deit_", size, "_patch16_224")];
      c.distilled = true;
      t[cat("deit_", size, "_distilled_patch16_224")] = c;
    }
    // DeiT-III: layer scale and position embeddings for the patches only.
    for (auto [size, c] : std::map<std::string, VitConfig>{{"small", make(384, 12, 6)},
                                                           {"medium", make(512, 12, 8)},
                                                           {"base", make(768, 12, 12)},
                                                           {"large", make(1024, 24, 16)}}) {
      c.no_embed_class = true;
      c.init_values = 1e-6;
      t[cat("deit3_", size, "_patch16_224")] = c;
    }
    // Sized for fine-tuning demos on 2 CPU cores: 32x32 images, an 8x8 grid of 4x4 patches, 0.46M
    // parameters (~280 images/s of training on 2 cores).
    VitConfig demo = make(96, 4, 3);
    demo.image_size = 32;
    demo.patch_size = 4;
    demo.num_classes = 10;
    t["vit_demo_patch4_32"] = demo;
    // The smallest useful model: 4x4 grid, 2 blocks, for tests.
    VitConfig test = make(32, 2, 4);
    test.image_size = 32;
    test.patch_size = 8;
    test.num_classes = 10;
    test.mlp_ratio = 2.0;
    t["vit_test_patch8_32"] = test;
    return t;
  }();
  return table;
}

}  // namespace

void validate_vit_config(const VitConfig& c) {
  auto positive = [](const char* field, int64_t v) {
    if (v <= 0) fail("vit config: ", field, " must be positive, found ", v);
  };
  positive("image_size", c.image_size);
  positive("patch_size", c.patch_size);
  positive("in_chans", c.in_chans);
  positive("num_classes", c.num_classes);
  positive("embed_dim", c.embed_dim);
  positive("depth", c.depth);
  positive("num_heads", c.num_heads);
  if (c.image_size % c.patch_size != 0)
    fail("vit config: image_size ", c.image_size, " is not a multiple of patch_size ", c.patch_size);
  if (c.embed_dim % c.num_heads != 0)
    fail("vit config: embed_dim ", c.embed_dim, " is not a multiple of num_heads ", c.num_heads);
  if (c.mlp_ratio <= 0) fail("vit config: mlp_ratio must be positive, found ", c.mlp_ratio);
  if (c.global_pool != "token" && c.global_pool != "avg")
    fail("vit config: global_pool must be \"token\" or \"avg\", found \"", c.global_pool, "\"");
  if (c.global_pool == "token" && !c.class_token) fail("vit config: global_pool \"token\" needs class_token = true");
  if (c.distilled && (!c.class_token || c.global_pool != "token"))
    fail("vit config: distilled needs class_token = true and global_pool \"token\" (as timm's DeiT)");
  if (c.init_values < 0) fail("vit config: init_values must be >= 0 (0 = no layer scale), found ", c.init_values);
  for (auto [field, p] : {std::pair{"drop_rate", c.drop_rate}, std::pair{"pos_drop_rate", c.pos_drop_rate},
                          std::pair{"proj_drop_rate", c.proj_drop_rate}, std::pair{"attn_drop_rate", c.attn_drop_rate},
                          std::pair{"drop_path_rate", c.drop_path_rate}})
    if (p < 0 || p >= 1) fail("vit config: ", field, " must be in [0, 1), found ", p);
}

VitConfig vit_config_preset(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) {
    std::string known;
    for (const auto& n : vit_preset_names()) known += (known.empty() ? "" : ", ") + n;
    fail("unknown ViT preset \"", name, "\" (known: ", known, ")");
  }
  return it->second;
}

std::vector<std::string> vit_preset_names() {
  std::vector<std::string> names;
  for (const auto& item : presets()) names.push_back(item.first);
  return names;
}

std::vector<double> vit_drop_path_rates(const VitConfig& c) {
  // torch.linspace(0, rate, depth), as timm: the first block is never dropped.
  torch::Tensor rates = torch::linspace(0.0, c.drop_path_rate, c.depth, torch::kFloat64);
  return std::vector<double>(rates.data_ptr<double>(), rates.data_ptr<double>() + c.depth);
}

torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (p == 0.0 || !training) return x;
  const double keep = 1.0 - p;
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);  // one draw per sample: (B, 1, 1)
  torch::Tensor mask = torch::empty(shape, x.options()).bernoulli_(keep);
  if (keep > 0.0) mask.div_(keep);
  return x * mask;
}

void trunc_normal_(torch::Tensor t, double std, double mean, double a, double b, std::optional<at::Generator> generator) {
  torch::NoGradGuard no_grad;
  auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  const double lo = cdf((a - mean) / std), hi = cdf((b - mean) / std);
  t.uniform_(2 * lo - 1, 2 * hi - 1, generator).erfinv_().mul_(std * std::sqrt(2.0)).add_(mean).clamp_(a, b);
}

LayerScaleImpl::LayerScaleImpl(int64_t dim, double init_values) {
  gamma = register_parameter("gamma", torch::full({dim}, init_values));
}

PatchEmbedImpl::PatchEmbedImpl(const VitConfig& c) : image_size(c.image_size) {
  proj = register_module("proj", nn::Conv2d(nn::Conv2dOptions(c.in_chans, c.embed_dim, c.patch_size)
                                                .stride(c.patch_size)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != proj->options.in_channels() || images.size(2) != image_size ||
      images.size(3) != image_size)
    fail("ViT input: expected images (B, ", proj->options.in_channels(), ", ", image_size, ", ", image_size,
         "), found ", images.sizes());
  // proj's convolution, in fp32 products where this CPU's are slow in autocast's dtype
  torch::Tensor x = kernels::conv2d(images, proj->weight, proj->bias, proj->options.stride());  // (B, C, gh, gw)
  return x.flatten(2).transpose(1, 2);  // (B, C, gh*gw) -> (B, N, C)
}

VitAttentionImpl::VitAttentionImpl(const VitConfig& c)
    : num_heads(c.num_heads),
      head_dim(c.embed_dim / c.num_heads),
      attn_drop(c.attn_drop_rate),
      proj_drop(c.proj_drop_rate) {
  qkv = register_module("qkv", Linear(c.embed_dim, 3 * c.embed_dim, c.qkv_bias));
  proj = register_module("proj", Linear(c.embed_dim, c.embed_dim));
}

torch::Tensor VitAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  torch::Tensor qkv_heads = qkv(kernels::autocast_operand(x)).reshape({B, T, 3, num_heads, head_dim}).permute({2, 0, 3, 1, 4});  // (3, B, H, T, D)
  // LibTorch's fused attention, as timm's fused_attn path: softmax(q k^T / sqrt(D)) v, dropout on
  // the probabilities while training.
  // (kernels/fp32_products.h: in fp32 products where this CPU's are slow in the heads' dtype)
  torch::Tensor y = kernels::scaled_dot_product_attention(qkv_heads[0], qkv_heads[1], qkv_heads[2], /*mask=*/std::nullopt,
                                                          /*dropout=*/is_training() ? attn_drop : 0.0, /*is_causal=*/false,
                                                          /*scale=*/std::nullopt, /*grouped=*/false);  // (B, H, T, D)
  y = y.transpose(1, 2).reshape({B, T, C});  // (B, H, T, D) -> (B, T, C)
  return torch::dropout(proj(y), proj_drop, is_training());
}

VitMlpImpl::VitMlpImpl(const VitConfig& c) : drop(c.proj_drop_rate) {
  const auto hidden = static_cast<int64_t>(static_cast<double>(c.embed_dim) * c.mlp_ratio);  // int() as timm
  fc1 = register_module("fc1", Linear(c.embed_dim, hidden));
  fc2 = register_module("fc2", Linear(hidden, c.embed_dim));
}

torch::Tensor VitMlpImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = torch::dropout(torch::gelu(fc1(kernels::autocast_operand(x))), drop, is_training());  // (B, T, hidden)
  return torch::dropout(fc2(h), drop, is_training());
}

VitBlockImpl::VitBlockImpl(const VitConfig& c, double drop_path_rate) {
  norm1 = register_module("norm1", layer_norm(c.embed_dim));
  attn = register_module("attn", VitAttention(c));
  if (c.init_values > 0) ls1 = register_module("ls1", LayerScale(c.embed_dim, c.init_values));
  if (drop_path_rate > 0) drop_path1 = register_module("drop_path1", DropPath(drop_path_rate));
  norm2 = register_module("norm2", layer_norm(c.embed_dim));
  mlp = register_module("mlp", VitMlp(c));
  if (c.init_values > 0) ls2 = register_module("ls2", LayerScale(c.embed_dim, c.init_values));
  if (drop_path_rate > 0) drop_path2 = register_module("drop_path2", DropPath(drop_path_rate));
}

torch::Tensor VitBlockImpl::forward(torch::Tensor x) {
  torch::Tensor h = attn(norm1(x));
  if (ls1) h = ls1(h);
  if (drop_path1) h = drop_path1(h);
  // The attention's residual add and the norm after it: one pass each way (kernels/layer_norm.h).
  auto [sum, normed] = add_layer_norm(x, h, norm2);
  h = mlp(normed);
  if (ls2) h = ls2(h);
  if (drop_path2) h = drop_path2(h);
  return sum + h;
}

VitImpl::VitImpl(const VitConfig& c, DeferredWeights* deferred) : config(c) {
  validate_vit_config(c);
  const int64_t C = c.embed_dim;
  // Before a byte is allocated, as make_causal_lm: a shape whose fp32 weights alone exceed this
  // host's memory (image_size 100000 makes 6e8 patch positions) is refused by its sizes.
  const double d = static_cast<double>(C), positions = static_cast<double>(c.pos_embed_len());
  const double count = positions * d + static_cast<double>(c.depth) * (4 + 2 * c.mlp_ratio) * d * d +
                       static_cast<double>(c.patch_size * c.patch_size * c.in_chans) * d + d * static_cast<double>(c.num_classes);
  if (const int64_t available = io::available_memory_bytes(); available > 0 && 4 * count > static_cast<double>(available))
    fail("vit: this shape has about ", count, " parameters, ", 4 * count / 1e9, " GB in fp32, more than the ",
         static_cast<double>(available) / 1e9, " GB this host has available (image_size ", c.image_size, " / patch_size ", c.patch_size,
         ": ", c.pos_embed_len(), " positions; embed_dim ", C, ", depth ", c.depth, ", num_classes ", c.num_classes,
         "); check model.image_size and the others");
  patch_embed = register_module("patch_embed", PatchEmbed(c));
  if (c.class_token) cls_token = register_parameter("cls_token", torch::zeros({1, 1, C}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, c.pos_embed_len(), C}));
  if (c.distilled) dist_token = register_parameter("dist_token", torch::zeros({1, 1, C}));
  blocks = register_module("blocks", nn::ModuleList());
  for (double rate : vit_drop_path_rates(c)) blocks->push_back(VitBlock(c, rate));
  if (c.global_pool == "avg") fc_norm = register_module("fc_norm", layer_norm(C));
  else norm = register_module("norm", layer_norm(C));
  reset_classifier();
  init_weights(deferred);
}

void VitImpl::reset_classifier() {
  head = set_module(*this, "head", nn::Linear(config.embed_dim, config.num_classes));
  init_linear(*head);
  if (config.distilled) {
    head_dist = set_module(*this, "head_dist", nn::Linear(config.embed_dim, config.num_classes));
    init_linear(*head_dist);
  }
}

void VitImpl::init_weights(DeferredWeights* deferred) {
  torch::NoGradGuard no_grad;
  trunc_normal_(pos_embed, 0.02);
  if (cls_token.defined()) cls_token.normal_(0.0, 1e-6);
  if (dist_token.defined()) trunc_normal_(dist_token, 0.02);
  for (const auto& item : named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    const std::shared_ptr<torch::nn::Module>& module = item.value();
    if (auto* linear = module->as<nn::Linear>()) init_linear(*linear);
    else if (auto* block_linear = module->as<Linear>()) {
      if (block_linear->weight.is_meta()) defer_init_linear(*block_linear, item.key(), deferred);
      else init_linear(block_linear->weight, block_linear->bias);
    } else if (auto* ls = module->as<LayerScale>()) ls->gamma.fill_(config.init_values);
    else if (auto* ln = module->as<nn::LayerNorm>()) ln->reset_parameters();
  }
}

torch::Tensor VitImpl::forward_features(const torch::Tensor& images) {
  torch::Tensor x = patch_embed(images);  // (B, N, C)
  const int64_t B = x.size(0);
  std::vector<torch::Tensor> prefix;  // class then distillation token, each (B, 1, C)
  if (cls_token.defined()) prefix.push_back(cls_token.expand({B, -1, -1}));
  if (dist_token.defined()) prefix.push_back(dist_token.expand({B, -1, -1}));
  auto with_prefix = [&](const torch::Tensor& patches) {
    if (prefix.empty()) return patches;
    std::vector<torch::Tensor> parts = prefix;
    parts.push_back(patches);
    return torch::cat(parts, 1);  // (B, prefix + N, C)
  };
  // DeiT-III adds positions to the patches only; timm's original layout also embeds the prefix.
  x = config.no_embed_class ? with_prefix(x + pos_embed) : with_prefix(x) + pos_embed;
  x = torch::dropout(x, config.pos_drop_rate, is_training());
  const BlockRunner run_block{0, block_hooks.before ? &block_hooks : nullptr};
  for (size_t i = 0; i < blocks->size(); ++i) {
    VitBlock block = blocks->ptr<VitBlockImpl>(i);
    x = run_block(static_cast<int64_t>(i), [block](const torch::Tensor& h) mutable { return block->forward(h); }, x);
  }
  return norm ? norm(x) : x;
}

torch::Tensor VitImpl::forward_head(const torch::Tensor& tokens) {
  using torch::indexing::Slice;
  // A head's product, in fp32 products where this CPU's are slow in autocast's dtype.
  auto classify = [](const nn::Linear& h, const torch::Tensor& x) { return kernels::linear(x, h->weight, h->bias); };
  // DeiT without a teacher: the two heads' logits averaged (timm outside distilled_training).
  if (config.distilled) return (classify(head, tokens.select(1, 0)) + classify(head_dist, tokens.select(1, 1))) / 2;
  torch::Tensor pooled = config.global_pool == "token"
                             ? tokens.select(1, 0)                                                   // (B, C)
                             : tokens.index({Slice(), Slice(config.num_prefix_tokens())}).mean(1);  // (B, C)
  if (fc_norm) pooled = fc_norm(pooled);
  return classify(head, torch::dropout(pooled, config.drop_rate, is_training()));
}

torch::Tensor VitImpl::forward(const torch::Tensor& images) { return forward_head(forward_features(images)); }

torch::Tensor VitImpl::loss(const torch::Tensor& images, const torch::Tensor& labels, double label_smoothing) {
  return nn::functional::cross_entropy(forward(images), labels,
                                       nn::functional::CrossEntropyFuncOptions().label_smoothing(label_smoothing));
}

}  // namespace lofi::model
