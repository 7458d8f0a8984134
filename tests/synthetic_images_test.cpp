// The generated image dataset: images are a pure function of (seed, split, index), the shifted
// styles look like what they claim, shapes cover the area their geometry says, and the ImageFolder
// tree is complete, identical for any thread count, cached by its manifest, and written whole.
#include "lofi/demo/synthetic_images.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "lofi/demo/synthetic_shapes.h"
#include "lofi/io/atomic_file.h"
#include "test_util.h"

namespace lofi::demo {
namespace {

namespace fs = std::filesystem;

SyntheticImageConfig tiny_config() {
  SyntheticImageConfig c;
  c.image_size = 16;
  c.pretrain_train_per_class = 2;
  c.pretrain_val_per_class = 1;
  c.finetune_train_per_class = 2;
  c.eval_per_class = 1;
  return c;
}

TEST(SyntheticImages, ClassesAreSortedAndTheTasksDisjoint) {
  const auto& pre = synthetic_image_classes("pretrain-train");
  const auto& fine = synthetic_image_classes("finetune-train");
  EXPECT_EQ(pre.size(), 16u);
  EXPECT_EQ(fine.size(), 10u);
  EXPECT_TRUE(std::is_sorted(pre.begin(), pre.end()));
  EXPECT_TRUE(std::is_sorted(fine.begin(), fine.end()));
  for (const auto& name : fine) EXPECT_EQ(std::count(pre.begin(), pre.end(), name), 0) << name;
  for (const auto& split : synthetic_image_splits())
    if (split.rfind("shift-", 0) == 0) {
      EXPECT_EQ(synthetic_image_classes(split), fine) << split;
    }
  EXPECT_EQ(synthetic_image_splits().size(), 8u);
}

TEST(SyntheticImages, AnImageIsAPureFunctionOfSeedSplitAndIndex) {
  SyntheticImageConfig c;
  torch::Tensor a = synthetic_image(c, "finetune-val", 7);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{32, 32, 3}));
  EXPECT_EQ(a.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(a, synthetic_image(c, "finetune-val", 7)));
  EXPECT_FALSE(torch::equal(a, synthetic_image(c, "finetune-val", 17)));  // same class, other draw
  EXPECT_FALSE(torch::equal(a, synthetic_image(c, "finetune-train", 7)));
  SyntheticImageConfig other = c;
  other.seed = 2;
  EXPECT_FALSE(torch::equal(a, synthetic_image(other, "finetune-val", 7)));
  other = c;
  other.threads = 1;  // not part of the image
  EXPECT_TRUE(torch::equal(a, synthetic_image(other, "finetune-val", 7)));
  torch::set_num_threads(1);  // nor is LibTorch's thread count
  EXPECT_TRUE(torch::equal(a, synthetic_image(c, "finetune-val", 7)));
  torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  other = c;
  other.image_size = 24;
  EXPECT_EQ(synthetic_image(other, "shift-sketch", 0).size(0), 24);
}

TEST(SyntheticImages, LabelsCycleThroughTheClasses) {
  SyntheticImageConfig c;
  EXPECT_EQ(synthetic_image_count(c, "pretrain-train"), 16 * 2000);
  EXPECT_EQ(synthetic_image_count(c, "shift-corrupt"), 10 * 50);
  EXPECT_EQ(synthetic_image_label("pretrain-val", 17), 1);
  EXPECT_EQ(synthetic_image_label("shift-pose", 29), 9);
}

TEST(SyntheticImages, SketchesAreDarkLinesOnLightPaper) {
  SyntheticImageConfig c;
  for (int64_t i = 0; i < 20; ++i) {
    torch::Tensor img = synthetic_image(c, "shift-sketch", i).to(torch::kFloat32);
    torch::Tensor gray = img.mean(2);
    // Colourless: channels agree up to rounding.
    EXPECT_LE((img.amax(2) - img.amin(2)).max().item<float>(), 1.0f) << i;
    // Mostly paper, but the outline is there.
    double paper = gray.gt(200).to(torch::kFloat32).mean().item<double>();
    EXPECT_GT(paper, 0.6) << i;
    EXPECT_LT(paper, 0.97) << i;
    EXPECT_LT(gray.min().item<float>(), 120.0f) << i;
  }
}

TEST(SyntheticImages, ObjectsStandOutFromTheirBackground) {
  // Solid shapes (disk, hexagon, pentagon, square) cover the image centre, which must differ
  // clearly from the corners (background and the odd bit of clutter).
  SyntheticImageConfig c;
  int clear = 0, seen = 0;
  for (int64_t i = 0; i < 160; ++i) {
    int64_t label = synthetic_image_label("pretrain-train", i);
    if (label != 4 && label != 8 && label != 9 && label != 12) continue;
    torch::Tensor g = synthetic_image(c, "pretrain-train", i).to(torch::kFloat32).mean(2);
    float centre = g.slice(0, 15, 17).slice(1, 15, 17).mean().item<float>();
    float corners = (g[0][0] + g[0][31] + g[31][0] + g[31][31]).item<float>() / 4;
    clear += std::abs(centre - corners) > 40;
    ++seen;
  }
  EXPECT_EQ(seen, 40);
  EXPECT_GE(clear, 36);
}

TEST(SyntheticShapes, CoverageMatchesTheGeometry) {
  ShapePose pose;  // centre 16, 10 pixels per unit
  auto area = [&](ShapeTask task, const std::string& name, ShapePose p) {
    const auto& names = shape_class_names(task);
    int64_t cls = std::find(names.begin(), names.end(), name) - names.begin();
    ShapeRaster r = rasterize_shape(task, cls, p, 32, false);
    EXPECT_TRUE(r.edge.empty());
    return std::accumulate(r.fill.begin(), r.fill.end(), 0.0);
  };
  EXPECT_NEAR(area(ShapeTask::kPretrain, "disk", pose), M_PI * 9 * 9, 3);    // radius 0.9
  EXPECT_NEAR(area(ShapeTask::kPretrain, "square", pose), 16 * 16, 3);       // half-side 0.8
  EXPECT_NEAR(area(ShapeTask::kPretrain, "ring", pose), M_PI * (100 - 36), 4);
  EXPECT_NEAR(area(ShapeTask::kFinetune, "frame", pose), 17 * 17 - 10 * 10, 3);
  ShapePose rotated = pose;
  rotated.angle = 0.7;
  rotated.aspect = 0.5;
  EXPECT_NEAR(area(ShapeTask::kPretrain, "square", rotated), 16 * 16 / 2.0, 4);  // area scales with aspect
  ShapeRaster edged = rasterize_shape(ShapeTask::kPretrain, 4, pose, 32, true);
  double perimeter = std::accumulate(edged.edge.begin(), edged.edge.end(), 0.0);
  EXPECT_NEAR(perimeter, 2 * M_PI * 9, 8);  // an outline about one pixel wide
  EXPECT_NE(test::error_of([&] { rasterize_shape(ShapeTask::kFinetune, 10, pose, 32, false); }).find("[0, 10)"),
            std::string::npos);
}

TEST(SyntheticImages, RefusesUnknownSplitsAndIndices) {
  SyntheticImageConfig c;
  EXPECT_NE(test::error_of([&] { synthetic_image(c, "shift-paint", 0); }).find("unknown split \"shift-paint\""),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { synthetic_image(c, "finetune-val", 500); }).find("[0, 500), found 500"),
            std::string::npos);
  c.image_size = 4;
  EXPECT_NE(test::error_of([&] { synthetic_image(c, "finetune-val", 0); }).find("image_size"), std::string::npos);
}

// Every file under DIR, relative path -> contents.
std::map<std::string, std::string> tree_files(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) files[fs::relative(entry.path(), dir).string()] = io::read_text_file(entry.path());
  return files;
}

TEST(SyntheticImageTree, WritesEveryImageTheSameForAnyThreadCount) {
  std::string root = test::scratch_dir();
  SyntheticImageConfig c = tiny_config();
  c.threads = 1;
  SyntheticImageTree one = write_synthetic_images(c, root + "/one");
  c.threads = 3;
  EXPECT_TRUE(write_synthetic_images(c, root + "/three/").generated);  // a trailing slash names the same tree
  EXPECT_TRUE(one.generated);
  EXPECT_EQ(one.images, 16 * 3 + 10 * 2 + 10 * 5);
  auto files = tree_files(root + "/one");
  EXPECT_EQ(static_cast<int64_t>(files.size()), one.images + 1);  // + manifest.json
  EXPECT_EQ(files, tree_files(root + "/three"));
  // The PNG holds exactly the in-memory image.
  test::PngImage png = test::read_png(root + "/one/shift-sketch/hexagram/00000.png");
  ASSERT_EQ(png.width, 16);
  EXPECT_TRUE(torch::equal(torch::from_blob(png.rgb.data(), {16, 16, 3}, torch::kUInt8),
                           synthetic_image(c, "shift-sketch", 4)));
  auto manifest = nlohmann::json::parse(files.at("manifest.json"));
  EXPECT_EQ(manifest["splits"]["pretrain-train"], 32);
  EXPECT_EQ(manifest["image_size"], 16);
  // Nothing but the two trees is left beside them.
  int entries = 0;
  for (auto& e : fs::directory_iterator(root)) entries += !!e.exists();
  EXPECT_EQ(entries, 2);
}

TEST(SyntheticImageTree, KeepsACompleteTreeAndReplacesAnOutdatedOne) {
  std::string dir = test::scratch_dir() + "/data";
  SyntheticImageConfig c = tiny_config();
  ASSERT_TRUE(write_synthetic_images(c, dir).generated);
  std::string marker = dir + "/pretrain-train/arrow/00000.png";
  io::write_file_atomic(marker, "stale");  // a cached tree is not even read again
  SyntheticImageTree again = write_synthetic_images(c, dir);
  EXPECT_FALSE(again.generated);
  EXPECT_EQ(again.images, 118);
  EXPECT_EQ(io::read_text_file(marker), "stale");
  c.seed = 5;
  EXPECT_TRUE(write_synthetic_images(c, dir).generated);
  EXPECT_NE(io::read_text_file(marker), "stale");
  EXPECT_EQ(nlohmann::json::parse(io::read_text_file(dir + "/manifest.json"))["seed"], 5);
  EXPECT_FALSE(fs::exists(dir + "/pretrain-train/arrow/00002.png"));
}

TEST(SyntheticImageTree, RefusesToOverwriteOtherData) {
  std::string root = test::scratch_dir();  // one call: each call empties the directory
  std::string dir = root + "/photos";
  io::make_dirs(dir);
  io::write_file_atomic(dir + "/mine.jpg", "x");
  EXPECT_NE(test::error_of([&] { write_synthetic_images(tiny_config(), dir); }).find("is not a lofi synthetic image"),
            std::string::npos);
  EXPECT_TRUE(fs::exists(dir + "/mine.jpg"));
  std::string empty = root + "/empty";
  io::make_dirs(empty);  // an empty directory is fine to fill
  EXPECT_TRUE(write_synthetic_images(tiny_config(), empty).generated);
  SyntheticImageConfig bad = tiny_config();
  bad.eval_per_class = 0;
  std::string none = root + "/none";
  EXPECT_NE(test::error_of([&] { write_synthetic_images(bad, none); }).find("finetune-val needs at least one"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(none));
}

}  // namespace
}  // namespace lofi::demo
