// The vision demo's shipped pretrained ViT (assets/demo/vit_demo_shapes.safetensors, embedded in
// the binary) is what the demo says it is: the demo's model at its default pretraining steps, and
// strong on held-out images of its source task as the generator draws them today. A change to the
// generator or the ViT that leaves the shipped model behind fails here; assets/demo/vit_demo_shapes.sh
// makes it anew.
#include <gtest/gtest.h>

#include "lofi/demo/demo.h"
#include "lofi/demo/shipped_vit.h"
#include "lofi/demo/synthetic_images.h"
#include "lofi/demo/vision_demo.h"
#include "lofi/family/image_evaluator.h"
#include "lofi/io/safetensors.h"
#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi {
namespace {

TEST(ShippedVit, IsTheDemosModelAtItsDefaultSteps) {
  const std::string path = test::scratch_dir() + "/pretrained.safetensors";
  demo::write_shipped_vision_pretrained(path);
  const io::Metadata meta = io::SafetensorsFile(path).metadata();
  ASSERT_TRUE(meta.count("lofi.step"));
  EXPECT_EQ(meta.at("lofi.step"), std::to_string(demo::VisionDemoOptions{}.pretrain_steps));
  EXPECT_EQ(demo::DemoOptions{}.vision_pretrain_steps, demo::VisionDemoOptions{}.pretrain_steps);
  const train::Config c = train::config_from_checkpoint(path);
  EXPECT_EQ(c.model.arch, "vit");
  EXPECT_EQ(c.model.preset, "vit_demo_patch4_32");
  EXPECT_EQ(family::checkpoint_classes(path), demo::synthetic_image_classes("pretrain-val"));
}

TEST(ShippedVit, IsStrongOnHeldOutSourceImages) {
  const std::string dir = test::scratch_dir(), path = dir + "/pretrained.safetensors";
  demo::SyntheticImageConfig images;  // the demo's pretrain-val (the same images); little else
  images.pretrain_train_per_class = 1, images.finetune_train_per_class = 1, images.eval_per_class = 1;
  images.threads = 2;
  demo::write_synthetic_images(images, dir + "/images");
  demo::write_shipped_vision_pretrained(path);
  family::ImageEvalSettings settings;
  settings.threads = 2;
  const double top1 = family::ImageEvaluator(train::config_from_checkpoint(path), family::checkpoint_classes(path),
                                             {{"source", dir + "/images/pretrain-val", ""}}, settings)
                          .score_file(path)[0]
                          .top1;
  std::printf("shipped ViT: top-1 %.2f%% on %lld held-out source images\n", 100 * top1,
              static_cast<long long>(demo::synthetic_image_count(images, "pretrain-val")));
  EXPECT_GE(top1, 0.90);
}

}  // namespace
}  // namespace lofi
