#include "lofi/model/vit.h"

#include <gtest/gtest.h>

#include <set>

#include "lofi/dist/device.h"
#include "lofi/error.h"
#include "lofi/io/safetensors.h"
#include "lofi/kernels/cpu_avx2.h"
#include "lofi/kernels/fp32_products.h"
#include "lofi/model/vit_checkpoint.h"
#include "lofi/model/weights.h"
#include "autograd_nodes.h"
#include "cpu_bytes.h"
#include "product_dtypes.h"
#include "test_util.h"

namespace lofi::model {
namespace {

// 32x32 images, 8x8 patches (a 4x4 grid), width 32, 2 blocks, 4 heads, 10 classes.
VitConfig tiny() { return vit_config_preset("vit_test_patch8_32"); }

std::set<std::string> names_of(const torch::nn::Module& m) {
  std::set<std::string> out;
  for (const auto& item : m.named_parameters()) out.insert(item.key());
  return out;
}

// timm's VisionTransformer parameter names for DEPTH blocks, written out from
// timm/models/vision_transformer.py (Block, Attention, Mlp, PatchEmbed, LayerScale).
std::set<std::string> timm_names(int depth, bool layer_scale, bool fc_norm) {
  std::set<std::string> out = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                               "head.weight", "head.bias"};
  out.insert(fc_norm ? "fc_norm.weight" : "norm.weight");
  out.insert(fc_norm ? "fc_norm.bias" : "norm.bias");
  for (int i = 0; i < depth; ++i) {
    for (const char* m : {"norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"})
      for (const char* p : {"weight", "bias"}) out.insert(cat("blocks.", i, ".", m, ".", p));
    if (layer_scale) {
      out.insert(cat("blocks.", i, ".ls1.gamma"));
      out.insert(cat("blocks.", i, ".ls2.gamma"));
    }
  }
  return out;
}

// B's parameters set to A's (same config apart from rates): a checked copy by name.
void copy_weights(Vit& from, Vit& to) { load_named_tensors(*to, module_weights(*from), "copy"); }

TEST(VitModel, ParameterNamesAreTimms) {
  Vit vit(tiny());
  EXPECT_EQ(names_of(*vit), timm_names(2, false, false));
  auto p = vit->named_parameters();
  EXPECT_EQ(p["cls_token"].sizes(), torch::IntArrayRef({1, 1, 32}));
  EXPECT_EQ(p["pos_embed"].sizes(), torch::IntArrayRef({1, 16 + 1, 32}));
  EXPECT_EQ(p["patch_embed.proj.weight"].sizes(), torch::IntArrayRef({32, 3, 8, 8}));
  EXPECT_EQ(p["blocks.1.attn.qkv.weight"].sizes(), torch::IntArrayRef({96, 32}));
  EXPECT_EQ(p["blocks.0.mlp.fc1.weight"].sizes(), torch::IntArrayRef({64, 32}));
  EXPECT_EQ(p["head.weight"].sizes(), torch::IntArrayRef({10, 32}));
  EXPECT_TRUE(vit->named_buffers().is_empty());  // export is the parameters alone
}

TEST(VitModel, OptionsAddTimmsNames) {
  VitConfig distilled = tiny();
  distilled.distilled = true;
  std::set<std::string> want = timm_names(2, false, false);
  want.insert({"dist_token", "head_dist.weight", "head_dist.bias"});
  Vit d(distilled);
  EXPECT_EQ(names_of(*d), want);
  EXPECT_EQ(d->pos_embed.sizes(), torch::IntArrayRef({1, 16 + 2, 32}));  // both prefix tokens embedded

  VitConfig deit3 = tiny();
  deit3.init_values = 1e-6;
  deit3.no_embed_class = true;
  Vit d3(deit3);
  EXPECT_EQ(names_of(*d3), timm_names(2, true, false));
  EXPECT_EQ(d3->pos_embed.sizes(), torch::IntArrayRef({1, 16, 32}));  // patches only
  EXPECT_TRUE(torch::all(d3->named_parameters()["blocks.1.ls2.gamma"] == 1e-6f).item<bool>());

  VitConfig avg = tiny();
  avg.global_pool = "avg";
  EXPECT_EQ(names_of(*Vit(avg)), timm_names(2, false, true));
}

TEST(VitModel, LogitShapes) {
  torch::manual_seed(0);
  torch::Tensor images = torch::randn({3, 3, 32, 32});
  for (auto [pool, distilled] : {std::pair{"token", false}, std::pair{"avg", false}, std::pair{"token", true}}) {
    VitConfig c = tiny();
    c.global_pool = pool;
    c.distilled = distilled;
    Vit vit(c);
    EXPECT_EQ(vit->forward_features(images).sizes(), torch::IntArrayRef({3, 16 + c.num_prefix_tokens(), 32}));
    EXPECT_EQ(vit->forward(images).sizes(), torch::IntArrayRef({3, 10})) << pool << distilled;
  }
  Vit vit(tiny());
  std::string err = test::error_of([&] { vit->forward(torch::randn({1, 3, 48, 48})); });
  EXPECT_NE(err.find("(B, 3, 32, 32)"), std::string::npos) << err;
}

TEST(VitModel, InitialisationAsTimm) {
  torch::manual_seed(0);
  VitConfig c = vit_config_preset("deit_tiny_distilled_patch16_224");
  c.depth = 2;
  c.init_values = 0.1;
  Vit vit(c);
  auto p = vit->named_parameters();
  EXPECT_LT(p["cls_token"].abs().max().item<double>(), 1e-5);  // normal(0, 1e-6)
  EXPECT_NEAR(p["dist_token"].std().item<double>(), 0.02, 0.005);
  EXPECT_NEAR(p["pos_embed"].std().item<double>(), 0.02, 0.001);
  EXPECT_NEAR(p["blocks.0.attn.qkv.weight"].std().item<double>(), 0.02, 0.001);
  EXPECT_NEAR(p["head.weight"].std().item<double>(), 0.02, 0.001);
  EXPECT_EQ(p["blocks.1.mlp.fc2.bias"].abs().max().item<double>(), 0.0);
  EXPECT_EQ(p["head_dist.bias"].abs().max().item<double>(), 0.0);
  EXPECT_TRUE(torch::all(p["blocks.0.norm1.weight"] == 1).item<bool>());
  EXPECT_TRUE(torch::all(p["norm.bias"] == 0).item<bool>());
  EXPECT_TRUE(torch::all(p["blocks.0.ls1.gamma"] == 0.1f).item<bool>());
}

TEST(VitModel, TruncatedNormalStaysInBounds) {
  torch::manual_seed(0);
  torch::Tensor t = torch::empty({100000});
  trunc_normal_(t, 1.0, 0.0, -0.5, 0.5);
  EXPECT_LE(t.abs().max().item<double>(), 0.5);
  // A standard normal truncated to [-0.5, 0.5] has std 0.2841.
  EXPECT_NEAR(t.std().item<double>(), 0.2841, 0.003);
}

TEST(VitModel, DistilledLogitsAreTheMeanOfBothHeads) {
  torch::manual_seed(0);
  VitConfig c = tiny();
  c.distilled = true;
  Vit vit(c);
  vit->train();  // no teacher: the mean in training too
  torch::Tensor images = torch::randn({2, 3, 32, 32});
  torch::Tensor tokens = vit->forward_features(images);
  torch::Tensor want = (vit->head(tokens.select(1, 0)) + vit->head_dist(tokens.select(1, 1))) / 2;
  EXPECT_TRUE(torch::allclose(vit->forward(images), want));
}

TEST(VitModel, StochasticDepth) {
  VitConfig c = tiny();
  c.depth = 3;
  c.drop_path_rate = 0.5;
  std::vector<double> rates = vit_drop_path_rates(c);
  ASSERT_EQ(rates.size(), 3u);
  EXPECT_EQ(rates[0], 0.0);
  EXPECT_DOUBLE_EQ(rates[1], 0.25);
  EXPECT_DOUBLE_EQ(rates[2], 0.5);
  torch::manual_seed(0);
  Vit vit(c);
  auto children = vit->blocks[0]->named_children();
  EXPECT_FALSE(children.contains("drop_path1"));  // rate 0: timm's Identity
  EXPECT_TRUE(vit->blocks[2]->named_children().contains("drop_path2"));

  torch::Tensor images = torch::randn({16, 3, 32, 32});
  auto run = [&](uint64_t seed) {
    torch::manual_seed(seed);
    return vit->forward(images);
  };
  vit->train();
  EXPECT_TRUE(torch::equal(run(1), run(1)));   // deterministic given the seed
  EXPECT_FALSE(torch::equal(run(1), run(2)));  // and random across seeds

  VitConfig plain = c;
  plain.drop_path_rate = 0;
  Vit reference(plain);
  copy_weights(vit, reference);
  vit->eval();
  reference->eval();
  EXPECT_TRUE(torch::equal(vit->forward(images), reference->forward(images)));  // identity in eval

  // Per sample: a dropped path leaves x, a kept one is scaled by 1 / keep.
  torch::manual_seed(3);
  torch::Tensor x = torch::ones({1000, 2, 2});
  torch::Tensor y = drop_path(x, 0.25, true);
  torch::Tensor first = y.select(1, 0).select(1, 0);
  EXPECT_TRUE(torch::all((first == 0) | (first == static_cast<float>(1 / 0.75))).item<bool>());
  EXPECT_TRUE(torch::equal(y, first.view({1000, 1, 1}).expand({1000, 2, 2})));
  EXPECT_NEAR((first == 0).to(torch::kFloat).mean().item<double>(), 0.25, 0.05);
}

TEST(VitModel, DropoutOnlyInTraining) {
  VitConfig c = tiny();
  c.drop_rate = c.pos_drop_rate = c.proj_drop_rate = c.attn_drop_rate = 0.3;
  torch::manual_seed(0);
  Vit vit(c), reference(tiny());
  copy_weights(vit, reference);
  torch::Tensor images = torch::randn({4, 3, 32, 32});
  vit->eval();
  reference->eval();
  EXPECT_TRUE(torch::equal(vit->forward(images), reference->forward(images)));
  vit->train();
  EXPECT_FALSE(torch::allclose(vit->forward(images), reference->forward(images)));
}

TEST(VitModel, LossFallsWhenOverfittingOneBatch) {
  torch::manual_seed(0);
  Vit vit(tiny());
  torch::Tensor images = torch::randn({8, 3, 32, 32});
  torch::Tensor labels = torch::randint(0, 10, {8});
  torch::optim::AdamW opt(vit->parameters(), torch::optim::AdamWOptions(2e-3));
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    opt.zero_grad();
    torch::Tensor loss = vit->loss(images, labels);
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_NEAR(first, std::log(10.0), 0.2);  // near-uniform at init (head std .02)
  EXPECT_LT(last, 0.1 * first);
}

// A training step under bf16 autocast: on a CPU without fast bf16 products none of its products
// (the patch convolution, the linear layers, attention, the head) runs in bf16; with them,
// autocast's bf16 products run (tests/product_dtypes.h).
// Under bf16 autocast with LoRA adapters on qkv and fc1, each base product and its adapter's A
// share one bf16 copy of their fp32 input (kernels/autocast_operand.h), not one each.
TEST(VitModel, AutocastAdaptedProjectionsKeepOneCopyOfTheirInput) {
  const VitConfig c = tiny();
  torch::manual_seed(0);
  VitAttention attn(c);
  VitMlp mlp(c);
  attn->qkv->attach_lora(2, 1.0, 0.0);
  mlp->fc1->attach_lora(2, 1.0, 0.0);
  const torch::Tensor x = torch::randn({2, 5, c.embed_dim});
  EXPECT_EQ(test::kept_for_an_fp32_input([&](const torch::Tensor& h) { return attn->forward(h); }, x), x.numel() * 2) << "attention";
  EXPECT_EQ(test::kept_for_an_fp32_input([&](const torch::Tensor& h) { return mlp->forward(h); }, x), x.numel() * 2) << "MLP";
}

TEST(VitModel, Bf16AutocastTakesFp32ProductsOnlyWhereBf16IsSlow) {
  torch::manual_seed(0);
  Vit vit(tiny());
  const torch::Tensor images = torch::randn({2, 3, 32, 32}), labels = torch::randint(0, 10, {2});
  test::Bf16Products seen;
  torch::Tensor loss;
  {
    dist::PrecisionGuard bf16(torch::kCPU, "bf16");
    loss = vit->loss(images, labels);
  }
  loss.backward();
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  EXPECT_TRUE(vit->named_parameters()["patch_embed.proj.weight"].grad().defined());
  if (kernels::cpu_has_fast_low_precision_products())
    EXPECT_FALSE(seen.names().empty());
  else
    EXPECT_TRUE(seen.names().empty()) << "bf16 products: " << c10::Join(", ", seen.names());
}

// Each block's attention residual add and norm2 run as one fused op on a CPU with AVX2
// (kernels/layer_norm.h), none left to the composite, whose results are the same.
TEST(VitModel, BlocksTakeTheFusedAddAndNorm) {
  if (!kernels::avx2::avx2_available()) GTEST_SKIP() << "the fused CPU loops need AVX2; this CPU runs the composite";
  torch::manual_seed(0);
  Vit vit(tiny());
  const torch::Tensor logits = vit->forward(torch::randn({2, 3, 32, 32}));
  EXPECT_EQ(test::graph_nodes_named(logits, "AddLayerNormFunction"), tiny().depth);
}

TEST(VitModel, BadConfigsAndPresetsAreNamed) {
  VitConfig c = tiny();
  c.image_size = 30;
  EXPECT_NE(test::error_of([&] { Vit v(c); }).find("patch_size"), std::string::npos);
  c = tiny();
  c.distilled = true;
  c.global_pool = "avg";
  EXPECT_NE(test::error_of([&] { Vit v(c); }).find("distilled"), std::string::npos);
  c = tiny();
  c.drop_path_rate = 1.0;
  EXPECT_NE(test::error_of([&] { Vit v(c); }).find("drop_path_rate"), std::string::npos);
  std::string err = test::error_of([] { vit_config_preset("deit_huge"); });
  EXPECT_NE(err.find("deit3_base_patch16_224"), std::string::npos) << err;
  VitConfig base = vit_config_preset("deit_base_patch16_224");
  EXPECT_EQ(base.embed_dim, 768);
  EXPECT_EQ(base.num_patches(), 196);
  VitConfig deit3 = vit_config_preset("deit3_base_patch16_224");
  EXPECT_TRUE(deit3.no_embed_class);
  EXPECT_EQ(deit3.init_values, 1e-6);
}

}  // namespace
}  // namespace lofi::model
