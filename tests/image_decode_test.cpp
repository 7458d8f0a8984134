// Decoders against PIL's decoding of the committed fixtures (tests/fixtures/images/make_images.py),
// the eval transform against torchvision's, and ImageFolder's layout rules.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "lofi/data/augment.h"
#include "lofi/data/image_decode.h"
#include "lofi/data/image_folder.h"
#include "lofi/error.h"
#include "test_util.h"

namespace lofi::data {
namespace {
namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(LOFI_FIXTURES) / "images";

template <typename T>
torch::Tensor read_raw(const fs::path& path, std::vector<int64_t> shape, torch::Dtype dtype) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "missing fixture " << path;
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto out = torch::empty(shape, dtype);
  EXPECT_EQ(bytes.size(), static_cast<size_t>(out.numel()) * sizeof(T)) << path;
  std::memcpy(out.data_ptr(), bytes.data(), std::min(bytes.size(), static_cast<size_t>(out.nbytes())));
  return out;
}

TEST(ImageDecode, MatchesPilOnEveryLayout) {
  std::ifstream list(kFixtures / "expected.txt");
  ASSERT_TRUE(list) << "missing " << kFixtures / "expected.txt";
  std::string name;
  int64_t h = 0, w = 0, count = 0;
  while (list >> name >> h >> w) {
    SCOPED_TRACE(name);
    auto want = read_raw<uint8_t>(kFixtures / (name + ".rgb"), {h, w, 3}, torch::kUInt8);
    auto got = decode_image((kFixtures / name).string());
    ASSERT_EQ(got.sizes(), want.sizes());
    ASSERT_EQ(got.dtype(), torch::kUInt8);
    // libjpeg-turbo is PIL's decoder too, and PNG is lossless: the pixels must be identical.
    int64_t max_diff = (got.to(torch::kInt) - want.to(torch::kInt)).abs().max().item<int64_t>();
    EXPECT_EQ(max_diff, 0);
    ++count;
  }
  EXPECT_EQ(count, 12);
}

TEST(ImageDecode, ChoosesTheFormatBySignatureNotExtension) {
  std::string dir = test::scratch_dir();
  fs::copy_file(kFixtures / "rgb.png", dir + "/really_png.jpg");
  auto got = decode_image(dir + "/really_png.jpg");
  EXPECT_TRUE(got.equal(decode_image((kFixtures / "rgb.png").string())));
}

TEST(ImageDecode, BadFilesThrowNamingThePath) {
  struct Case {
    const char* file;
    const char* says;
  };
  for (Case c : {Case{"truncated.jpg", "complete JPEG"}, Case{"truncated_header.jpg", "unreadable header"}, Case{"truncated.png", "PNG"}, Case{"corrupt.png", "PNG"},
                 Case{"cmyk.jpg", "CMYK"}, Case{"not_an_image.jpg", "unknown signature"},
                 Case{"missing.png", "cannot open"}}) {
    std::string path = (kFixtures / c.file).string();
    std::string error = test::error_of([&] { decode_image(path); });
    EXPECT_NE(error.find(path), std::string::npos) << c.file << ": " << error;
    EXPECT_NE(error.find(c.says), std::string::npos) << c.file << ": " << error;
  }
  EXPECT_NE(test::error_of([] { decode_image_bytes({}, "empty.png"); }).find("empty file"), std::string::npos);
}

TEST(ImageDecode, EvalTransformMatchesTorchvision) {
  AugmentConfig config;
  config.image_size = 24;  // as make_images.py: resize to floor(24 / 0.875) = 27, crop 24
  for (std::string src : {"eval_src", "eval_small"}) {
    for (std::string mode : {"bicubic", "bilinear"}) {
      SCOPED_TRACE(src + " " + mode);
      config.interpolation = mode;
      auto want = read_raw<float>(kFixtures / (src + "_" + mode + ".f32"), {3, 24, 24}, torch::kFloat);
      auto got = eval_transform(decode_image((kFixtures / (src + ".png")).string()), config);
      ASSERT_EQ(got.sizes(), want.sizes());
      // The same ATen kernel on the same float input: only summation order may differ.
      double max_diff = (got - want).abs().max().item<double>();
      EXPECT_LE(max_diff, 1e-5);
      std::printf("eval transform %s %s: max |lofi - torchvision| = %.3g\n", src.c_str(), mode.c_str(), max_diff);
    }
  }
}

TEST(ImageDecode, ColourAdjustmentsMatchTorchvision) {
  auto x = decode_image((kFixtures / "eval_small.png").string()).permute({2, 0, 1}).to(torch::kFloat) / 255.0;
  struct Case {
    const char* name;
    torch::Tensor got;
  };
  for (const Case& c : {Case{"brightness_1.3", adjust_brightness(x, 1.3)}, Case{"contrast_0.6", adjust_contrast(x, 0.6)},
                        Case{"saturation_1.5", adjust_saturation(x, 1.5)}, Case{"hue_0.2", adjust_hue(x, 0.2)},
                        Case{"hue_-0.35", adjust_hue(x, -0.35)}}) {
    auto want = read_raw<float>(kFixtures / (std::string("adjust_") + c.name + ".f32"), {3, 16, 11}, torch::kFloat);
    double max_diff = (c.got - want).abs().max().item<double>();
    EXPECT_LE(max_diff, 1e-6) << c.name;
    std::printf("adjust %s: max |lofi - torchvision| = %.3g\n", c.name, max_diff);
  }
}

void touch(const fs::path& path) {
  fs::create_directories(path.parent_path());
  fs::copy_file(kFixtures / "rgb.png", path);
}

TEST(ImageFolder, SortsClassesAndFilesAsTorchvision) {
  std::string root = test::scratch_dir();
  for (const char* f : {"dog/b.PNG", "dog/a.jpg", "dog/sub/c.jpeg", "Cat/z.jpg", "cat/x.png", "cat/notes.txt"})
    touch(fs::path(root) / f);
  ImageFolder folder(root);
  EXPECT_EQ(folder.classes(), (std::vector<std::string>{"Cat", "cat", "dog"}));  // bytewise: upper case first
  std::vector<std::string> got;
  for (auto& s : folder.samples()) got.push_back(fs::relative(s.path, root).string() + ":" + std::to_string(s.label));
  EXPECT_EQ(got, (std::vector<std::string>{"Cat/z.jpg:0", "cat/x.png:1", "dog/a.jpg:2", "dog/b.PNG:2",
                                           "dog/sub/c.jpeg:2"}));
}

TEST(ImageFolder, GivenClassesMapATestSetByName) {
  std::string root = test::scratch_dir();
  touch(fs::path(root) / "dog/a.png");
  touch(fs::path(root) / "ant/b.png");
  ImageFolder folder(root, {"zebra", "dog", "ant"});  // the training classes, one absent here
  ASSERT_EQ(folder.size(), 2);
  EXPECT_EQ(folder.samples()[0].label, 1);  // dog first: labels ascend, as torchvision's loop over classes
  EXPECT_EQ(folder.samples()[1].label, 2);
  std::string error = test::error_of([&] { ImageFolder(root, {"dog"}); });
  EXPECT_NE(error.find("\"ant\""), std::string::npos) << error;
}

// --max-images: a share of every class, spread through each class, not its first files.
TEST(ImageFolder, BalancedSubsetTakesEveryClass) {
  std::string root = test::scratch_dir();
  for (int i = 0; i < 6; ++i) touch(fs::path(root) / ("a/" + std::to_string(i) + ".png"));
  touch(fs::path(root) / "b/0.png");
  for (int i = 0; i < 3; ++i) touch(fs::path(root) / ("c/" + std::to_string(i) + ".png"));
  ImageFolder folder(root);
  std::vector<std::string> got;
  for (int64_t i : balanced_subset(folder, 5)) got.push_back(fs::relative(folder.samples()[i].path, root).string());
  // Shares 2, 1, 2 (b has one image only); within a class, evenly spaced.
  EXPECT_EQ(got, (std::vector<std::string>{"a/0.png", "a/3.png", "b/0.png", "c/0.png", "c/1.png"}));
  EXPECT_EQ(balanced_subset(folder, 3).size(), 3u);
  EXPECT_EQ(balanced_subset(folder, 100).size(), 10u);  // everything, once
  EXPECT_EQ(balanced_subset(folder, 5), balanced_subset(folder, 5));
}

TEST(ImageFolder, EmptyOrMissingRootsAreErrors) {
  std::string root = test::scratch_dir();
  EXPECT_NE(test::error_of([&] { ImageFolder(root + "/nope"); }).find("no directory"), std::string::npos);
  EXPECT_NE(test::error_of([&] { ImageFolder{root}; }).find("found none"), std::string::npos);
  fs::create_directories(root + "/cls");
  std::ofstream(root + "/cls/readme.txt") << "x";
  EXPECT_NE(test::error_of([&] { ImageFolder{root}; }).find("images"), std::string::npos);
}

}  // namespace
}  // namespace lofi::data
