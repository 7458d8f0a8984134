// Training transforms and batch mixing: determinism given a seed, variation across seeds,
// torchvision's crop rules, timm's mixup/CutMix target algebra, and the soft-target loss.
#include <gtest/gtest.h>

#include <cmath>

#include "lofi/data/augment.h"
#include "lofi/data/mixup.h"
#include "lofi/error.h"

namespace lofi::data {
namespace {

at::Generator seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

torch::Tensor test_image(int64_t h, int64_t w) {  // (H, W, 3) uint8
  auto gen = seeded(99);
  return torch::randint(0, 256, {h, w, 3}, gen, torch::kLong).to(torch::kUInt8);
}

TEST(AugmentTransform, SameSeedSameImageOtherSeedsDiffer) {
  AugmentConfig config;
  config.image_size = 32;
  config.color_jitter_hue = 0.1;
  auto image = test_image(40, 50);
  auto g1 = seeded(5), g2 = seeded(5);
  auto a = train_transform(image, config, g1), b = train_transform(image, config, g2);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_TRUE(a.equal(b));
  int distinct = 0;
  for (uint64_t seed = 6; seed < 12; ++seed) {
    auto g = seeded(seed);
    distinct += !train_transform(image, config, g).equal(a);
  }
  EXPECT_EQ(distinct, 6);
}

TEST(AugmentTransform, RandomResizedCropStaysInsideAndInRange) {
  AugmentConfig config;
  auto gen = seeded(1);
  for (int i = 0; i < 200; ++i) {
    CropBox box = random_resized_crop_box(60, 80, config, gen);
    ASSERT_GE(box.top, 0);
    ASSERT_GE(box.left, 0);
    ASSERT_LE(box.top + box.height, 60);
    ASSERT_LE(box.left + box.width, 80);
    double area = static_cast<double>(box.height * box.width) / (60.0 * 80.0);
    // Rounding w and h to pixels moves the area and aspect a little past the drawn ranges.
    EXPECT_GT(area, 0.08 * 0.8);
    double aspect = static_cast<double>(box.width) / static_cast<double>(box.height);
    EXPECT_GT(aspect, 0.75 * 0.8);
    EXPECT_LT(aspect, 4.0 / 3.0 * 1.25);
  }
}

TEST(AugmentTransform, RandomResizedCropFallsBackToAClampedCentreCrop) {
  AugmentConfig config;
  config.scale_min = config.scale_max = 1.0;  // the whole area at aspect >= 3/4 never fits 10 x 100
  auto gen = seeded(1);
  CropBox box = random_resized_crop_box(100, 10, config, gen);
  // torchvision: in_ratio 0.1 < 3/4 -> w = 10, h = round(10 / 0.75) = 13, centred.
  EXPECT_EQ(box.width, 10);
  EXPECT_EQ(box.height, 13);
  EXPECT_EQ(box.top, (100 - 13) / 2);
  EXPECT_EQ(box.left, 0);
}

TEST(AugmentTransform, FlipAndJitterCanBeTurnedOff) {
  AugmentConfig config;
  config.image_size = 16;
  config.scale_min = config.scale_max = 1.0;
  config.ratio_min = config.ratio_max = 1.0;  // the whole square image, every time
  config.hflip = 0;
  config.color_jitter = 0;
  auto image = test_image(16, 16);
  auto g = seeded(3);
  auto plain = train_transform(image, config, g);
  EXPECT_TRUE(plain.allclose(eval_transform(image, [&] {
    AugmentConfig e = config;
    e.crop_pct = 1.0;
    return e;
  }())));
  config.hflip = 1.0;
  g = seeded(3);
  EXPECT_TRUE(train_transform(image, config, g).allclose(plain.flip({2})));
}

TEST(AugmentTransform, JitterAdjustmentsFollowTorchvisionsFormulas) {
  AugmentConfig config;
  config.color_jitter = 0.4;
  auto x = torch::rand({3, 8, 8});
  auto g1 = seeded(11), g2 = seeded(11);
  auto y = color_jitter(x, config, g1);
  EXPECT_TRUE(y.equal(color_jitter(x, config, g2)));
  EXPECT_GE(y.min().item<float>(), 0.0f);
  EXPECT_LE(y.max().item<float>(), 1.0f);
  EXPECT_FALSE(y.equal(x));
  // Hue shifts add up on the colour wheel: two half turns are a full turn, the identity (up to the
  // HSV round trip), and a quarter turn is undone by its opposite; a half turn alone is not.
  EXPECT_TRUE(adjust_hue(adjust_hue(x, 0.5), 0.5).allclose(x, 1e-4, 1e-4));
  EXPECT_TRUE(adjust_hue(adjust_hue(x, 0.25), -0.25).allclose(x, 1e-4, 1e-4));
  EXPECT_TRUE(adjust_hue(x, 0.0).allclose(x, 1e-5, 1e-5));
  EXPECT_FALSE(adjust_hue(x, 0.5).allclose(x, 1e-2, 1e-2));
  AugmentConfig hue_only;
  hue_only.color_jitter = 0;
  hue_only.color_jitter_hue = 0.5;
  auto g3 = seeded(2);
  auto shifted = color_jitter(x, hue_only, g3);
  EXPECT_FALSE(shifted.allclose(x, 1e-3, 1e-3));
  // Grey pixels have no hue: shifting it leaves them alone.
  auto grey = torch::rand({1, 8, 8}).expand({3, 8, 8}).contiguous();
  auto g4 = seeded(2);
  EXPECT_TRUE(color_jitter(grey, hue_only, g4).allclose(grey, 1e-6, 1e-6));
}

TEST(AugmentTransform, BadConfigsAreNamed) {
  AugmentConfig c;
  c.interpolation = "nearest";
  EXPECT_THROW(validate(c), Error);
  c = AugmentConfig{};
  c.crop_pct = 1.5;
  try {
    validate(c);
    ADD_FAILURE() << "crop_pct 1.5 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("crop_pct"), std::string::npos);
  }
}

struct MixFixture {
  torch::Tensor images = torch::rand({6, 3, 8, 8});
  torch::Tensor labels = torch::tensor({0, 1, 2, 3, 4, 0}, torch::kLong);
};

TEST(AugmentMixup, TargetsAreConvexMixesOfSmoothedLabels) {
  MixFixture f;
  const torch::Tensor original = f.images.clone();
  AugmentConfig config;  // DeiT: mixup 0.8, CutMix 1.0, switch 0.5, smoothing 0.1
  int cutmix = 0, mixup = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    auto gen = seeded(seed);
    MixedBatch m = mix_batch(f.images, f.labels, 5, config, gen);
    ASSERT_EQ(m.targets.sizes(), (std::vector<int64_t>{6, 5}));
    EXPECT_TRUE(m.targets.sum(1).allclose(torch::ones({6}), 1e-6, 1e-6));
    auto own = smooth_one_hot(f.labels, 5, 0.1);
    EXPECT_TRUE(m.targets.allclose(own * m.lambda + own.flip({0}) * (1 - m.lambda), 1e-6, 1e-6));
    if (m.cutmix) {
      ++cutmix;
      // Lambda is corrected to the share of pixels each image kept of itself.
      auto kept = (m.images == f.images).all(1).to(torch::kDouble).mean({1, 2});  // (B)
      EXPECT_NEAR(kept[0].item<double>(), m.lambda, 1e-9);
    } else {
      ++mixup;
      EXPECT_TRUE(m.images.allclose(f.images * m.lambda + f.images.flip({0}) * (1 - m.lambda), 1e-5, 1e-6));
    }
  }
  EXPECT_GT(cutmix, 5);  // switch_prob 0.5 over 40 batches
  EXPECT_GT(mixup, 5);
  EXPECT_TRUE(f.images.equal(original));  // mixing never writes into its input batch
}

TEST(AugmentMixup, OffEqualsPlainCrossEntropy) {
  MixFixture f;
  AugmentConfig config;
  config.mixup_alpha = config.cutmix_alpha = 0;
  config.label_smoothing = 0;
  auto gen = seeded(0);
  MixedBatch m = mix_batch(f.images, f.labels, 5, config, gen);
  EXPECT_TRUE(m.images.equal(f.images));
  EXPECT_EQ(m.lambda, 1.0);
  auto logits = torch::randn({6, 5});
  auto soft = soft_target_cross_entropy(logits, m.targets).item<double>();
  auto plain = torch::nn::functional::cross_entropy(logits, f.labels).item<double>();
  EXPECT_NEAR(soft, plain, 1e-6);
  // Smoothing matches LibTorch's own label_smoothing.
  config.label_smoothing = 0.1;
  m = mix_batch(f.images, f.labels, 5, config, gen);
  auto smoothed = torch::nn::functional::cross_entropy(
      logits, f.labels, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(0.1));
  EXPECT_NEAR(soft_target_cross_entropy(logits, m.targets).item<double>(), smoothed.item<double>(), 1e-6);
}

TEST(AugmentMixup, BadLabelsAreErrors) {
  MixFixture f;
  AugmentConfig config;
  auto gen = seeded(0);
  EXPECT_THROW(mix_batch(f.images, f.labels, 3, config, gen), Error);
}

}  // namespace
}  // namespace lofi::data

namespace lofi::data {
namespace {

// CutMix pastes one axis-aligned box of the batch's mirror image (batch order flipped, as timm):
// inside it every pixel is the partner's, outside it every pixel is the image's own.
TEST(AugmentMixup, CutMixPastesOneBoxOfThePartner) {
  MixFixture f;
  AugmentConfig config;
  config.mixup_alpha = 0;  // CutMix only
  int boxes = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto gen = seeded(seed);
    MixedBatch m = mix_batch(f.images, f.labels, 5, config, gen);
    ASSERT_TRUE(m.cutmix);
    const torch::Tensor partner = f.images.flip({0});
    torch::Tensor pasted = (m.images == partner).all(1) & (m.images != f.images).any(1);  // (B, H, W)
    torch::Tensor own = (m.images == f.images).all(1);
    EXPECT_TRUE((pasted | own).all().item<bool>()) << "a pixel is neither its own nor the partner's";
    torch::Tensor box = pasted[0];  // the box is the same for the whole batch
    if (!box.any().item<bool>()) continue;
    ++boxes;
    torch::Tensor rows = box.any(1).nonzero().flatten(), cols = box.any(0).nonzero().flatten();
    const int64_t r0 = rows.min().item<int64_t>(), r1 = rows.max().item<int64_t>();
    const int64_t c0 = cols.min().item<int64_t>(), c1 = cols.max().item<int64_t>();
    // Everything inside the bounding rectangle comes from the partner: the pasted region is a box.
    using torch::indexing::Slice;
    torch::Tensor inside = m.images.index({Slice(), Slice(), Slice(r0, r1 + 1), Slice(c0, c1 + 1)});
    EXPECT_TRUE(inside.equal(partner.index({Slice(), Slice(), Slice(r0, r1 + 1), Slice(c0, c1 + 1)}))) << seed;
    EXPECT_NEAR(1.0 - static_cast<double>((r1 - r0 + 1) * (c1 - c0 + 1)) / 64.0, m.lambda, 1e-9) << seed;
  }
  EXPECT_GT(boxes, 10);
}

}  // namespace
}  // namespace lofi::data
