// ViT checkpoints: loading, adapting (head, position grid), and golden comparisons with
// torchvision, PyTorch's interpolate and timm (fixtures and their scripts in tests/fixtures/vit).
#include "lofi/model/vit_checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "lofi/model/weights.h"
#include "test_util.h"

namespace lofi::model {
namespace {

namespace fs = std::filesystem;

VitConfig tiny() { return vit_config_preset("vit_test_patch8_32"); }

fs::path fixture_dir() { return fs::path(LOFI_FIXTURES) / "vit"; }

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

std::string save(const std::string& name, const io::NamedTensors& tensors) {
  std::string path = test::scratch_dir() + "/" + name;
  io::save_safetensors(path, tensors);
  return path;
}

TEST(VitCheckpoint, ExportLoadsBackUnchanged) {
  torch::manual_seed(0);
  VitConfig c = tiny();
  c.distilled = true;
  Vit a(c), b(c);
  std::string path = save("a.safetensors", module_weights(*a));
  EXPECT_TRUE(load_vit_checkpoint(b, io::SafetensorsFile(path)).empty());
  a->eval();
  b->eval();
  torch::Tensor images = torch::randn({2, 3, 32, 32});
  EXPECT_TRUE(torch::equal(a->forward(images), b->forward(images)));
}

TEST(VitCheckpoint, CommonPrefixIsStripped) {
  torch::manual_seed(0);
  Vit a(tiny()), b(tiny());
  io::NamedTensors prefixed;
  for (auto& [name, t] : module_weights(*a)) prefixed.emplace_back("module." + name, t);
  EXPECT_TRUE(load_vit_checkpoint(b, prefixed, "ddp.pth").empty());
  EXPECT_TRUE(torch::equal(a->pos_embed, b->pos_embed));
}

TEST(VitCheckpoint, HeadIsReinitialisedWhenClassesDiffer) {
  torch::manual_seed(0);
  VitConfig pre = tiny(), fine = tiny();
  pre.distilled = fine.distilled = true;
  fine.num_classes = 5;
  Vit a(pre), b(fine);
  std::vector<std::string> notices = load_vit_checkpoint(b, module_weights(*a), "in1k.safetensors");
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_NE(notices[0].find("10 classes, the model 5"), std::string::npos) << notices[0];
  EXPECT_EQ(b->head->weight.sizes(), torch::IntArrayRef({5, 32}));
  EXPECT_EQ(b->head_dist->weight.sizes(), torch::IntArrayRef({5, 32}));
  EXPECT_EQ(b->head->bias.abs().max().item<double>(), 0.0);
  EXPECT_NEAR(b->head->weight.std().item<double>(), 0.02, 0.01);
  EXPECT_TRUE(torch::equal(a->named_parameters()["blocks.1.mlp.fc2.weight"], b->named_parameters()["blocks.1.mlp.fc2.weight"]));
  EXPECT_TRUE(torch::equal(a->dist_token, b->dist_token));
  // The fresh head is registered: an optimizer built afterwards trains it.
  EXPECT_TRUE(b->named_parameters()["head.weight"].is_same(b->head->weight));
  EXPECT_EQ(b->forward(torch::randn({1, 3, 32, 32})).size(1), 5);
}

TEST(VitCheckpoint, PosEmbedIsResampledWhenTheGridDiffers) {
  torch::manual_seed(0);
  for (bool no_embed_class : {false, true}) {
    VitConfig pre = tiny(), fine = tiny();
    pre.no_embed_class = fine.no_embed_class = no_embed_class;
    fine.image_size = 48;  // 6x6 grid
    Vit a(pre), b(fine);
    std::vector<std::string> notices = load_vit_checkpoint(b, module_weights(*a), "pre.safetensors");
    ASSERT_EQ(notices.size(), 1u);
    EXPECT_NE(notices[0].find("4x4 to a 6x6"), std::string::npos) << notices[0];
    const int64_t prefix = no_embed_class ? 0 : 1;
    EXPECT_EQ(b->pos_embed.sizes(), torch::IntArrayRef({1, 36 + prefix, 32}));
    EXPECT_TRUE(torch::equal(b->pos_embed.narrow(1, 0, prefix), a->pos_embed.narrow(1, 0, prefix)));  // kept
    EXPECT_TRUE(torch::equal(b->pos_embed.narrow(1, prefix, 36),
                             resample_abs_pos_embed(a->pos_embed, {6, 6}, {4, 4}, prefix).narrow(1, prefix, 36)));
  }
}

TEST(VitCheckpoint, ResampleIsIdentityOnTheSameGrid) {
  torch::Tensor posemb = torch::randn({1, 1 + 16, 8});
  EXPECT_TRUE(resample_abs_pos_embed(posemb, {4, 4}, {4, 4}, 1).is_same(posemb));
  EXPECT_EQ(resample_abs_pos_embed(posemb, {2, 8}, {4, 4}, 1).sizes(), torch::IntArrayRef({1, 1 + 16, 8}));
  EXPECT_NE(test::error_of([&] { resample_abs_pos_embed(posemb, {6, 6}, {5, 5}, 1); }).find("(1, 1 + 5*5, C)"),
            std::string::npos);
}

TEST(VitCheckpoint, MismatchesAreNamedErrors) {
  torch::manual_seed(0);
  VitConfig wide = tiny();
  wide.embed_dim = 64;
  Vit small(tiny()), big(wide);
  std::string err = test::error_of([&] { load_vit_checkpoint(big, module_weights(*small), "small.safetensors"); });
  EXPECT_NE(err.find("small.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("pos_embed"), std::string::npos) << err;

  VitConfig distilled = tiny();
  distilled.distilled = true;
  Vit d(distilled), plain(tiny());
  err = test::error_of([&] { load_vit_checkpoint(plain, module_weights(*d), "deit.safetensors"); });
  EXPECT_NE(err.find("deit.safetensors: checkpoint has 'dist_token' but the model has distilled = false"),
            std::string::npos) << err;
  err = test::error_of([&] { load_vit_checkpoint(d, module_weights(*plain), "vit.safetensors"); });
  EXPECT_NE(err.find("lacks 'dist_token' but the model has distilled = true"), std::string::npos) << err;

  io::NamedTensors extra = module_weights(*plain);
  extra.emplace_back("blocks.0.attn.q_norm.weight", torch::ones({8}));
  err = test::error_of([&] { load_vit_checkpoint(plain, extra, "qknorm.safetensors"); });
  EXPECT_NE(err.find("'blocks.0.attn.q_norm.weight'"), std::string::npos) << err;

  io::NamedTensors bad = module_weights(*plain);
  for (auto& [name, t] : bad)
    if (name == "blocks.1.mlp.fc1.weight") t = torch::zeros({65, 32});
  err = test::error_of([&] { load_vit_checkpoint(plain, bad, "bad.safetensors"); });
  EXPECT_NE(err.find("'blocks.1.mlp.fc1.weight' has shape [65, 32]"), std::string::npos) << err;
}

// torchvision.models.VisionTransformer (make_torchvision_fixture.py) under timm's names.
TEST(VitGolden, MatchesTorchvision) {
  VitConfig c = tiny();
  Vit vit(c);
  EXPECT_TRUE(load_vit_checkpoint(vit, io::SafetensorsFile((fixture_dir() / "torchvision_vit.safetensors").string())).empty());
  vit->eval();
  io::SafetensorsFile io((fixture_dir() / "torchvision_io.safetensors").string());
  torch::NoGradGuard no_grad;
  torch::Tensor logits = vit->forward(io.load("images"));
  double diff = max_abs_diff(logits, io.load("logits"));
  std::cout << "ViT vs torchvision: max |logit diff| = " << diff << " (logits up to "
            << io.load("logits").abs().max().item<double>() << ")\n";
  EXPECT_LE(diff, 1e-5);
}

// timm's resample_abs_pos_embed steps run on torch.nn.functional.interpolate (PyTorch 1.13).
TEST(VitGolden, ResampleMatchesPyTorchInterpolate) {
  io::SafetensorsFile f((fixture_dir() / "resample_pos_embed.safetensors").string());
  torch::Tensor posemb = f.load("posemb");
  for (auto [name, h, w] : {std::tuple{"to_6x6", 6, 6}, std::tuple{"to_3x3", 3, 3}, std::tuple{"to_5x7", 5, 7}}) {
    torch::Tensor got = resample_abs_pos_embed(posemb, {h, w}, {4, 4}, 1);
    ASSERT_EQ(got.sizes(), f.load(name).sizes()) << name;
    double diff = max_abs_diff(got, f.load(name));
    std::cout << "resample " << name << ": max |diff| = " << diff << "\n";
    EXPECT_LE(diff, 1e-6) << name;
  }
}

// timm itself (make_timm_fixtures.py wrote the fixtures): same tiny sizes. Then the other way:
// the weights lofi holds load into timm.create_model (strictly) and give timm's logits.
void expect_matches_timm(const std::string& dir, VitConfig c) {
  fs::path path = fixture_dir() / dir;
  ASSERT_TRUE(fs::exists(path / "model.safetensors"))
      << path.string() << " absent: run tests/fixtures/vit/make_timm_fixtures.py (scripts/install-deps.sh installs timm)";
  Vit vit(c);
  EXPECT_TRUE(load_vit_checkpoint(vit, io::SafetensorsFile((path / "model.safetensors").string())).empty());
  vit->eval();
  io::SafetensorsFile io((path / "io.safetensors").string());
  torch::NoGradGuard no_grad;
  double diff = max_abs_diff(vit->forward(io.load("images")), io.load("logits"));
  std::cout << "ViT vs timm " << dir << ": max |logit diff| = " << diff << "\n";
  EXPECT_LE(diff, 1e-5);
  const std::string written = save(dir + ".safetensors", module_weights(*vit));
  test::CommandResult timm = test::run_python("vit/check_timm_weights.py", dir + " " + written);
  std::cout << timm.output;
  EXPECT_EQ(timm.status, 0) << timm.output;
}

TEST(VitGolden, MatchesTimmDeit) { expect_matches_timm("timm_deit", tiny()); }

TEST(VitGolden, MatchesTimmDeitDistilled) {
  VitConfig c = tiny();
  c.distilled = true;
  expect_matches_timm("timm_deit_distilled", c);
}

TEST(VitGolden, MatchesTimmDeit3) {
  VitConfig c = tiny();
  c.init_values = 1e-6;
  c.no_embed_class = true;
  expect_matches_timm("timm_deit3", c);
}

TEST(VitGolden, MatchesTimmAvgPool) {
  VitConfig c = tiny();
  c.global_pool = "avg";
  expect_matches_timm("timm_vit_avg", c);
}

}  // namespace
}  // namespace lofi::model
