#include "lofi/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "lofi/error.h"
#include "test_util.h"

namespace lofi::io {
namespace {

void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << std::string(data_bytes, '\0');
}

// Expects opening a file with HEADER and DATA_BYTES of data to fail with a message holding NEEDLE.
void expect_rejected(const std::string& header, size_t data_bytes, const std::string& needle) {
  std::string path = test::scratch_dir() + "/bad.safetensors";
  write_raw(path, header, data_bytes);
  try {
    SafetensorsFile file(path);
    FAIL() << "accepted: " << header;
  } catch (const lofi::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "error does not name the file: " << e.what();
  }
}

TEST(Safetensors, RoundTripIsBitExact) {
  std::string path = test::scratch_dir() + "/t.safetensors";
  torch::manual_seed(0);
  NamedTensors tensors{{"a.weight", torch::randn({3, 5})},
                       {"b", torch::randn({7}).to(torch::kFloat16)},
                       {"c", torch::randn({2, 2}).to(torch::kBFloat16)},
                       {"d", torch::arange(10, torch::kInt64)},
                       {"e", torch::randn({4, 1}, torch::kFloat64)},
                       {"empty", torch::zeros({0, 3})},
                       {"scalar", torch::tensor(3.5f)}};
  save_safetensors(path, tensors, {{"k", "v"}});
  SafetensorsFile file(path);
  ASSERT_EQ(file.entries().size(), tensors.size());
  EXPECT_EQ(file.metadata().at("k"), "v");
  for (const auto& [name, t] : tensors) {
    torch::Tensor back = file.load(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_EQ(0, std::memcmp(back.data_ptr(), t.contiguous().data_ptr(), t.numel() * t.element_size())) << name;
  }
}

TEST(Safetensors, NonContiguousInputIsWrittenByValue) {
  std::string path = test::scratch_dir() + "/t.safetensors";
  torch::Tensor t = torch::arange(12, torch::kFloat32).view({3, 4}).t();
  save_safetensors(path, {{"t", t}});
  EXPECT_TRUE(torch::equal(SafetensorsFile(path).load("t"), t));
}

TEST(Safetensors, RejectsMalformedHeaders) {
  const std::string f32 = R"("dtype":"F32","shape":[2])";
  expect_rejected("{not json", 0, "not valid JSON");
  expect_rejected("[1,2]", 0, "must be a JSON object");
  expect_rejected(R"({"a":{)" + f32 + R"(,"data_offsets":[0,8]}})", 4, "past the data section");
  expect_rejected(R"({"a":{)" + f32 + R"(,"data_offsets":[0,4]}})", 4, "does not match");
  expect_rejected(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", 4, "unsupported dtype");
  expect_rejected(R"({"a":{)" + f32 + R"(,"data_offsets":[8,0]}})", 8, "backwards");
  expect_rejected(R"({"a":{)" + f32 + R"(,"data_offsets":[-1,7]}})", 8, "non-negative");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "non-negative");
  expect_rejected(R"({"a":{)" + f32 + R"(,"data_offsets":[0,8]},"b":{)" + f32 + R"(,"data_offsets":[4,12]}})", 12,
                  "overlaps");
  expect_rejected(R"({"a":{)" + f32 + R"(,"data_offsets":[8,16]}})", 16, "gap");
  expect_rejected(R"({"a":{)" + f32 + R"(,"data_offsets":[0,8]},"a":{)" + f32 + R"(,"data_offsets":[8,16]}})", 16,
                  "appears twice");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", 8, "does not match");
  expect_rejected(R"({"__metadata__":{"x":1}})", 0, "not a string");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[2]}})", 8, "no 'data_offsets'");
}

TEST(Safetensors, RejectsTruncatedAndForeignFiles) {
  std::string dir = test::scratch_dir();
  std::string good = dir + "/good.safetensors";
  save_safetensors(good, {{"w", torch::ones({64})}});
  auto size = std::filesystem::file_size(good);
  std::filesystem::copy_file(good, dir + "/cut.safetensors");
  std::filesystem::resize_file(dir + "/cut.safetensors", size - 10);
  EXPECT_THROW(SafetensorsFile(dir + "/cut.safetensors"), lofi::Error);
  std::ofstream(dir + "/text.safetensors") << "hello, I am not a checkpoint";
  EXPECT_THROW(SafetensorsFile(dir + "/text.safetensors"), lofi::Error);
  std::ofstream(dir + "/tiny.safetensors") << "abc";
  EXPECT_THROW(SafetensorsFile(dir + "/tiny.safetensors"), lofi::Error);
  EXPECT_THROW(SafetensorsFile(dir + "/missing.safetensors"), lofi::Error);
}

TEST(Safetensors, NothingHalfWrittenOnFailure) {
  std::string dir = test::scratch_dir();
  std::string path = dir + "/out.safetensors";
  EXPECT_THROW(save_safetensors(path, {{"a", torch::ones({2})}, {"a", torch::ones({2})}}), lofi::Error);
  {
    SafetensorsWriter writer(path, {{"a", "F32", {2}, 0, 0}, {"b", "F32", {3}, 0, 0}}, {});
    writer.write(torch::ones({2}));
    EXPECT_FALSE(std::filesystem::is_empty(dir));  // the temporary exists while writing
    EXPECT_THROW(writer.write(torch::ones({4})), lofi::Error);  // wrong shape: abandon the file
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace lofi::io
