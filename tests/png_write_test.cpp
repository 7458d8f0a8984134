// PNG writing: what lofi writes, libpng reads back byte for byte; bad input is refused with a
// message, and a failed write leaves no file.
#include "lofi/demo/png_write.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace lofi::demo {
namespace {

TEST(PngWrite, RoundTripsThroughLibpng) {
  // Odd sizes and every byte value, so row padding or channel order mistakes would show.
  torch::Tensor image = torch::arange(7 * 5 * 3, torch::kInt64).remainder(256).to(torch::kUInt8).reshape({7, 5, 3});
  image[0][0][0] = 255;
  std::string path = test::scratch_dir() + "/a.png";
  write_png(path, image);
  test::PngImage back = test::read_png(path);
  ASSERT_EQ(back.height, 7);
  ASSERT_EQ(back.width, 5);
  torch::Tensor read = torch::from_blob(back.rgb.data(), {7, 5, 3}, torch::kUInt8);
  EXPECT_TRUE(torch::equal(read, image));
  // No temporary is left beside the file.
  int files = 0;
  for (auto& entry : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) files += !!entry.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(PngWrite, AcceptsNonContiguousViews) {
  torch::Tensor chw = torch::randint(0, 256, {3, 4, 6}, torch::kUInt8);
  torch::Tensor hwc = chw.permute({1, 2, 0});  // (H, W, 3), not contiguous
  std::string path = test::scratch_dir() + "/b.png";
  write_png(path, hwc);
  test::PngImage back = test::read_png(path);
  ASSERT_EQ(back.width, 6);
  EXPECT_TRUE(torch::equal(torch::from_blob(back.rgb.data(), {4, 6, 3}, torch::kUInt8), hwc));
}

TEST(PngWrite, RefusesWrongShapesAndTypes) {
  std::string path = test::scratch_dir() + "/c.png";
  EXPECT_NE(test::error_of([&] { write_png(path, torch::zeros({4, 4, 4}, torch::kUInt8)); }).find("(H, W, 3) uint8"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { write_png(path, torch::zeros({4, 4, 3})); }).find("c.png"), std::string::npos);
  EXPECT_NE(test::error_of([&] { write_png(path, torch::zeros({0, 4, 3}, torch::kUInt8)); }).find("positive"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(PngWrite, ReportsAnUnwritableDirectory) {
  std::string path = test::scratch_dir() + "/missing/d.png";
  EXPECT_NE(test::error_of([&] { write_png(path, torch::zeros({2, 2, 3}, torch::kUInt8)); }).find("d.png"),
            std::string::npos);
}

}  // namespace
}  // namespace lofi::demo
