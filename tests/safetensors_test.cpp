// safetensors: bit-exact round trips of every dtype, loading into fp32 modules, and one test per
// kind of malformed file, each expecting one clear line that names the file.
#include "lofi/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "lofi/error.h"
#include "lofi/model/weights.h"
#include "test_util.h"

namespace lofi::io {
namespace {

const std::string kF32x2 = R"("dtype":"F32","shape":[2])";

// A file of LENGTH (the 8-byte prefix), then HEADER, then DATA_BYTES zero bytes.
void write_raw(const std::string& path, uint64_t length, const std::string& header, size_t data_bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&length), 8);
  out << header << std::string(data_bytes, '\0');
}

std::string write_header(const std::string& header, size_t data_bytes) {
  std::string path = test::scratch_dir() + "/bad.safetensors";
  write_raw(path, header.size(), header, data_bytes);
  return path;
}

// Expects opening PATH to fail with one line that names the file and holds NEEDLE.
void expect_open_fails(const std::string& path, const std::string& needle) {
  std::string error = test::error_of([&] { SafetensorsFile file(path); });
  ASSERT_FALSE(error.empty()) << "accepted " << path;
  EXPECT_NE(error.find(needle), std::string::npos) << error;
  EXPECT_NE(error.find(path), std::string::npos) << "error does not name the file: " << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << "error spans lines: " << error;
}

void expect_rejected(const std::string& header, size_t data_bytes, const std::string& needle) {
  expect_open_fails(write_header(header, data_bytes), needle);
}

std::string tensor(const std::string& name, const std::string& fields, size_t begin, size_t end) {
  return "\"" + name + "\":{" + fields + ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

// --- round trips -------------------------------------------------------------------------------

TEST(Safetensors, RoundTripOfEveryDtypeIsBitExact) {
  std::string path = test::scratch_dir() + "/t.safetensors";
  torch::manual_seed(0);
  NamedTensors tensors{{"f32", torch::randn({3, 5})},
                       {"f16", torch::randn({7}).to(torch::kFloat16)},
                       {"bf16", torch::randn({2, 3}).to(torch::kBFloat16)},
                       {"f64", torch::randn({4, 1}, torch::kFloat64)},
                       {"i64", torch::randint(-(int64_t{1} << 62), int64_t{1} << 62, {5}, torch::kInt64)},
                       {"i32", torch::randint(-(1 << 30), 1 << 30, {3}, torch::kInt32)},
                       {"i16", torch::randint(-30000, 30000, {9}, torch::kInt16)},
                       {"i8", torch::randint(-128, 127, {11}, torch::kInt8)},
                       {"u8", torch::randint(0, 255, {13}, torch::kUInt8)},
                       {"bool", torch::rand({6}) > 0.5},
                       {"empty", torch::zeros({0, 3})},
                       {"scalar", torch::tensor(3.5f)}};
  save_safetensors(path, tensors, {{"k", "v"}});
  SafetensorsFile file(path);
  ASSERT_EQ(file.entries().size(), tensors.size());
  EXPECT_EQ(file.metadata().at("k"), "v");
  const char* expected_dtype[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F32", "F32"};
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    EXPECT_EQ(file.find(name)->dtype, expected_dtype[i]) << name;
    for (torch::Tensor back : {file.load(name), file.view(*file.find(name)), file.load_all()[i].second}) {
      EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
      EXPECT_EQ(back.sizes(), t.sizes()) << name;
      EXPECT_EQ(0, std::memcmp(back.data_ptr(), t.contiguous().data_ptr(), t.numel() * t.element_size())) << name;
    }
  }
}

TEST(Safetensors, HeaderIsPaddedWithSpacesToEightBytes) {
  std::string dir = test::scratch_dir();
  for (int name_length = 1; name_length <= 8; ++name_length) {  // every header length modulo 8
    std::string path = dir + "/t" + std::to_string(name_length) + ".safetensors";
    save_safetensors(path, {{std::string(name_length, 'w'), torch::ones({3}, torch::kFloat64)}});
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    EXPECT_EQ(n % 8, 0u) << path;
    ASSERT_EQ(bytes.size(), 8 + n + 24) << path;
    std::string header = bytes.substr(8, n);
    std::string json_part = header.substr(0, header.find_last_not_of(' ') + 1);
    EXPECT_EQ(header.substr(json_part.size()), std::string(n - json_part.size(), ' ')) << path;
    EXPECT_TRUE(nlohmann::json::accept(json_part)) << json_part;
    EXPECT_TRUE(torch::equal(SafetensorsFile(path).load(std::string(name_length, 'w')), torch::ones({3}, torch::kFloat64)));
  }
}

TEST(Safetensors, NonContiguousInputIsWrittenByValue) {
  std::string path = test::scratch_dir() + "/t.safetensors";
  torch::Tensor t = torch::arange(12, torch::kFloat32).view({3, 4}).t();
  save_safetensors(path, {{"t", t}});
  EXPECT_TRUE(torch::equal(SafetensorsFile(path).load("t"), t));
}

TEST(Safetensors, HeaderOrderIsFreeAndEntriesComeInDataOrder) {
  // Files from other writers list tensors by name, not by offset; the reference accepts them.
  std::string path = write_header("{" + tensor("b", kF32x2, 8, 16) + "," + tensor("a", kF32x2, 0, 8) + "}  \t\n ", 16);
  SafetensorsFile file(path);
  ASSERT_EQ(file.entries().size(), 2u);
  EXPECT_EQ(file.entries()[0].name, "a");
  EXPECT_EQ(file.entries()[1].name, "b");
}

TEST(Safetensors, EmptyFileOfNoTensorsOpens) {
  std::string path = write_header("{}      ", 0);
  EXPECT_TRUE(SafetensorsFile(path).entries().empty());
}

TEST(Safetensors, UnsignedAndFloat8DtypesLoadExactly) {
  std::string path = test::scratch_dir() + "/u32.safetensors";
  {
    SafetensorsWriter writer(path, {{"ids", "U32", {3}, 0, 0}, {"x", "F32", {1}, 0, 0}}, {});
    const uint32_t ids[] = {1, 2, 4000000000u};
    writer.write_bytes(ids, sizeof(ids));
    writer.write(torch::ones({1}));
    writer.commit();
  }
  SafetensorsFile file(path);
  EXPECT_EQ(file.find("ids")->dtype, "U32");
  EXPECT_EQ(file.find("ids")->end - file.find("ids")->begin, 12u);
  EXPECT_TRUE(torch::equal(file.load("x"), torch::ones({1})));
  torch::Tensor ids = file.load("ids");
  EXPECT_EQ(ids.scalar_type(), torch::kUInt32);
  EXPECT_EQ(ids.to(torch::kInt64)[2].item<int64_t>(), 4000000000LL);
  // F8 and the other unsigned widths round-trip bit for bit.
  const std::string f8 = test::scratch_dir() + "/f8.safetensors";
  torch::Tensor x = torch::linspace(-2, 2, 9);
  save_safetensors(f8, {{"e4m3", x.to(torch::kFloat8_e4m3fn)}, {"e5m2", x.to(torch::kFloat8_e5m2)},
                        {"u16", torch::arange(9).to(torch::kUInt16)}, {"u64", torch::arange(9).to(torch::kUInt64)}});
  SafetensorsFile back(f8);
  EXPECT_EQ(back.find("e4m3")->dtype, "F8_E4M3");
  EXPECT_TRUE(torch::equal(back.load("e4m3").to(torch::kFloat32), x.to(torch::kFloat8_e4m3fn).to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(back.load("e5m2").to(torch::kFloat32), x.to(torch::kFloat8_e5m2).to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(back.load("u16").to(torch::kInt64), torch::arange(9)));
  EXPECT_TRUE(torch::equal(back.load("u64").to(torch::kInt64), torch::arange(9)));
}

// --- loading into a module (the path of model::load_module_weights) ------------------------------

struct TwoTensorsImpl : torch::nn::Module {
  torch::Tensor a = register_parameter("a", torch::zeros({3, 4}));
  torch::Tensor b = register_parameter("b", torch::zeros({5}));
};

TEST(Safetensors, LoadingConvertsEveryDtypeIntoFp32Parameters) {
  std::string dir = test::scratch_dir();
  torch::manual_seed(1);
  const std::vector<torch::Dtype> dtypes = {torch::kFloat64, torch::kFloat16, torch::kBFloat16, torch::kInt64,
                                            torch::kInt32,   torch::kInt16,   torch::kInt8,     torch::kUInt8};
  for (torch::Dtype dtype : dtypes) {
    torch::Tensor a = (torch::rand({3, 4}, torch::kFloat64) * 100).to(dtype);
    // An odd-length 16-bit tensor first puts "a" off its natural alignment: the copying path.
    torch::Tensor b = (torch::rand({5}, torch::kFloat64) * 100).to(dtype);
    std::string path = dir + "/" + dtype_to_safetensors(dtype) + ".safetensors";
    save_safetensors(path, {{"b", b}, {"a", a}});
    TwoTensorsImpl module;
    model::load_module_weights(module, SafetensorsFile(path));
    EXPECT_TRUE(torch::equal(module.a, a.to(torch::kFloat32))) << dtype;
    EXPECT_TRUE(torch::equal(module.b, b.to(torch::kFloat32))) << dtype;
    EXPECT_EQ(module.a.scalar_type(), torch::kFloat32);
  }
}

// --- hostile files: one test per way a file can be wrong ----------------------------------------

TEST(Safetensors, RejectsFilesShorterThanTheLength) {
  std::string path = test::scratch_dir() + "/tiny.safetensors";
  std::ofstream(path) << "abc";
  expect_open_fails(path, "shorter than the 8-byte header length");
}

TEST(Safetensors, RejectsHeaderLengthPastEndOfFile) {
  std::string path = test::scratch_dir() + "/cut.safetensors";
  write_raw(path, 1000, "{}", 0);
  expect_open_fails(path, "runs past the end of the file");
}

TEST(Safetensors, RejectsAbsurdHeaderLength) {
  std::string path = test::scratch_dir() + "/huge.safetensors";
  write_raw(path, kMaxSafetensorsHeaderBytes + 1, "{}", 0);
  expect_open_fails(path, "over the 100000000-byte limit");
  write_raw(path, ~uint64_t{0}, "{}", 0);  // would wrap 8 + length
  expect_open_fails(path, "over the 100000000-byte limit");
}

TEST(Safetensors, RejectsTruncatedData) {
  std::string dir = test::scratch_dir();
  std::string path = dir + "/cut.safetensors";
  save_safetensors(path, {{"w", torch::ones({64})}});
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 10);
  expect_open_fails(path, "past the data section");
}

TEST(Safetensors, RejectsInvalidJson) {
  expect_rejected("{not json", 0, "not valid UTF-8 JSON");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8, "not valid UTF-8 JSON");  // unclosed
  expect_rejected(std::string("{}\0\0\0\0\0\0", 8), 0, "NUL byte at header offset 2");  // NUL padding is not whitespace
  expect_rejected(std::string("{}\0\"a\":1}  ", 12), 0, "NUL byte");  // nor may it hide text from the parser
}

TEST(Safetensors, RejectsNonObjectHeader) { expect_rejected("[1,2]", 0, "must be a JSON object"); }

TEST(Safetensors, RejectsInvalidUtf8) {
  expect_rejected("{\"a\xff\":{" + kF32x2 + ",\"data_offsets\":[0,8]}}", 8, "not valid UTF-8 JSON");
  expect_rejected("{\"\xc0\xaf\":{" + kF32x2 + ",\"data_offsets\":[0,8]}}", 8, "not valid UTF-8 JSON");  // overlong
  expect_rejected("{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}", 0, "not valid UTF-8 JSON");  // a surrogate
}

TEST(Safetensors, RejectsUnknownDtype) {
  expect_rejected("{" + tensor("a", R"("dtype":"F33","shape":[1])", 0, 4) + "}", 4, "unknown dtype 'F33'");
  expect_rejected("{" + tensor("a", R"("dtype":4,"shape":[1])", 0, 4) + "}", 4, "dtype must be a string");
}

TEST(Safetensors, RejectsShapeTimesDtypeOtherThanItsBytes) {
  expect_rejected("{" + tensor("a", kF32x2, 0, 4) + "}", 4, "is 8 bytes, but data_offsets [0, 4] hold 4");
  expect_rejected("{" + tensor("a", R"("dtype":"F16","shape":[2])", 0, 8) + "}", 8, "is 4 bytes");
}

TEST(Safetensors, RejectsShapeOverflow) {
  expect_rejected("{" + tensor("a", R"("dtype":"F32","shape":[4611686018427387904,4])", 0, 8) + "}", 8, "overflows");
  expect_rejected("{" + tensor("a", R"("dtype":"F32","shape":[2305843009213693952])", 0, 8) + "}", 8, "overflows");
  expect_rejected("{" + tensor("a", R"("dtype":"U8","shape":[9223372036854775808])", 0, 8) + "}", 8, "overflows");
  // A zero does not excuse an overflowing product before it (the reference checks in order).
  expect_rejected("{" + tensor("a", R"("dtype":"U8","shape":[4294967296,4294967296,0])", 0, 0) + "}", 0, "overflows");
}

TEST(Safetensors, RejectsMalformedShape) {
  expect_rejected("{" + tensor("a", R"("dtype":"F32","shape":[-2])", 0, 8) + "}", 8, "non-negative integers");
  expect_rejected("{" + tensor("a", R"("dtype":"F32","shape":[2.0])", 0, 8) + "}", 8, "non-negative integers");
  expect_rejected("{" + tensor("a", R"("dtype":"F32","shape":2)", 0, 8) + "}", 8, "shape must be an array");
}

TEST(Safetensors, RejectsMissingFields) {
  expect_rejected(R"({"a":{"dtype":"F32","shape":[2]}})", 8, "no 'data_offsets'");
  expect_rejected(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8, "no 'dtype'");
  expect_rejected(R"({"a":[0,8]})", 8, "must be an object");
}

TEST(Safetensors, RejectsNegativeOffsets) {
  expect_rejected(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[-1,7]}})", 8, "two non-negative integers");
  expect_rejected(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[0,-8]}})", 8, "two non-negative integers");
  expect_rejected(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[0]}})", 8, "two non-negative integers");
}

TEST(Safetensors, RejectsOffsetsRunningBackwards) {
  expect_rejected("{" + tensor("a", kF32x2, 8, 0) + "}", 8, "run backwards");
}

TEST(Safetensors, RejectsOverlappingOffsets) {
  expect_rejected("{" + tensor("a", kF32x2, 0, 8) + "," + tensor("b", kF32x2, 4, 12) + "}", 12,
                  "'b' starts at byte 4, expected 8 (overlaps the tensor before it)");
  expect_rejected("{" + tensor("a", kF32x2, 0, 8) + "," + tensor("b", kF32x2, 0, 8) + "}", 8, "overlaps");
}

TEST(Safetensors, RejectsOffsetsPastTheEnd) {
  expect_rejected("{" + tensor("a", kF32x2, 0, 8) + "}", 4, "data_offsets end 8 is past the data section (4 bytes)");
  expect_rejected("{" + tensor("a", R"("dtype":"U8","shape":[0])", 18446744073709551615u, 18446744073709551615u) + "}",
                  4, "past the data section");
}

TEST(Safetensors, RejectsGapsInTheDataSection) {
  expect_rejected("{" + tensor("a", kF32x2, 8, 16) + "}", 16, "'a' starts at byte 8, expected 0 (gap");
  expect_rejected("{" + tensor("a", kF32x2, 0, 8) + "," + tensor("b", kF32x2, 12, 20) + "}", 20, "gap");
  expect_rejected("{" + tensor("a", kF32x2, 0, 8) + "}", 12, "tensors cover 8 of 12 data bytes");
}

TEST(Safetensors, RejectsDuplicateNames) {
  expect_rejected("{" + tensor("a", kF32x2, 0, 8) + "," + tensor("a", kF32x2, 8, 16) + "}", 16,
                  "tensor 'a' appears twice");
  expect_rejected(R"({"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8, "'dtype' appears twice");
  expect_rejected(R"({"__metadata__":{"k":"1","k":"2"}})", 0, "'k' appears twice");
}

TEST(Safetensors, RejectsNonStringMetadata) {
  expect_rejected(R"({"__metadata__":{"x":1}})", 0, "__metadata__ value 'x' must be a string");
  expect_rejected(R"({"__metadata__":{"x":{"y":"z"}}})", 0, "must be a string");
  expect_rejected(R"({"__metadata__":["x"]})", 0, "__metadata__ must be an object of strings");
}

TEST(Safetensors, RejectsDeepNestingWithoutExhaustingTheStack) {
  const int depth = 200000;
  expect_rejected(R"({"a":)" + std::string(depth, '[') + std::string(depth, ']') + "}", 0, "nests deeper than");
}

TEST(Safetensors, MessagesStayOneLineForHostileNames) {
  std::string name = R"(line\nbreak)" + std::string(5000, 'x');  // JSON escape: a real newline once parsed
  std::string error = test::error_of([&] {
    parse_safetensors_header("{" + tensor(name, R"("dtype":"F33","shape":[1])", 0, 4) + "}", 4, nullptr, "src");
  });
  EXPECT_EQ(error.rfind("src: tensor 'line\\x0abreak", 0), 0u) << error.substr(0, 200);
  EXPECT_EQ(error.find('\n'), std::string::npos);
  EXPECT_LT(error.size(), 600u);
}

TEST(Safetensors, ParsesAFileHeldInMemory) {
  std::string header = "{" + tensor("a", kF32x2, 0, 8) + R"(,"__metadata__":{"format":"pt"}})";
  std::string file(8, '\0');
  uint64_t n = header.size();
  std::memcpy(file.data(), &n, 8);
  file += header + std::string(8, '\0');
  SafetensorsLayout layout = parse_safetensors_file(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "mem");
  EXPECT_EQ(layout.data_start, 8 + header.size());
  ASSERT_EQ(layout.entries.size(), 1u);
  EXPECT_EQ(layout.entries[0].shape, std::vector<int64_t>{2});
  EXPECT_EQ(layout.metadata.at("format"), "pt");
  std::string error = test::error_of(
      [&] { parse_safetensors_file(reinterpret_cast<const uint8_t*>(file.data()), file.size() - 1, "mem"); });
  EXPECT_EQ(error.rfind("mem: tensor 'a': data_offsets end 8 is past the data section (7 bytes)", 0), 0u) << error;
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
  EXPECT_THROW(SafetensorsWriter(path, {{"a", "F33", {2}, 0, 0}}, {}), lofi::Error);
  EXPECT_THROW(SafetensorsWriter(path, {{"a", "U8", {int64_t{1} << 40, int64_t{1} << 40}, 0, 0}}, {}), lofi::Error);
}

// A file written piece by piece with CHECKSUM carries its data's XXH3, taken as the bytes went
// out and set in the header at the end; metadata that spells the key inside a value is left alone.
TEST(Safetensors, WriterChecksumsWhatItStreams) {
  const std::string path = test::scratch_dir() + "/streamed.safetensors";
  const std::string tricky = std::string("{\"") + kDataChecksumKey + "\":\"0000000000000000\"}";
  const torch::Tensor a = torch::randn({5, 3}), b = torch::arange(7, torch::kInt64);
  {
    SafetensorsWriter writer(path, {{"a", "F32", {5, 3}, 0, 0}, {"b", "I64", {7}, 0, 0}}, {{"note", tricky}}, /*checksum=*/true);
    writer.write(a);
    writer.write_bytes(b.data_ptr(), 3 * sizeof(int64_t));  // in two pieces
    writer.write_bytes(b.data_ptr<int64_t>() + 3, 4 * sizeof(int64_t));
    writer.commit();
  }
  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("note"), tricky);
  EXPECT_EQ(file.metadata().at(kDataChecksumKey), file.data_checksum());
  EXPECT_NE(file.data_checksum(), std::string(16, '0'));
  EXPECT_NO_THROW(file.verify_data_checksum());
  EXPECT_TRUE(torch::equal(file.load("a"), a));
  EXPECT_TRUE(torch::equal(file.load("b"), b));
  // save_safetensors writes the same bytes.
  const std::string whole = test::scratch_dir() + "/whole.safetensors";
  save_safetensors(whole, {{"a", a}, {"b", b}}, {{"note", tricky}}, /*checksum=*/true);
  EXPECT_EQ(SafetensorsFile(whole).checksum(), file.checksum());
  // A damaged byte is caught.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    f.put('\x7f');
  }
  EXPECT_THROW(SafetensorsFile(path).verify_data_checksum(), lofi::Error);
}

TEST(Safetensors, RejectsForeignAndMissingFiles) {
  std::string dir = test::scratch_dir();
  std::ofstream(dir + "/text.safetensors") << "hello, I am not a checkpoint";
  expect_open_fails(dir + "/text.safetensors", "header length");
  expect_open_fails(dir + "/missing.safetensors", "cannot open");
}

}  // namespace
}  // namespace lofi::io

namespace lofi::io {
namespace {

// The tensors of fixtures/safetensors/interop.py's expected(), built the same way here.
NamedTensors interop_tensors() {
  const std::vector<std::tuple<std::string, torch::Dtype, std::vector<int64_t>>> specs = {
      {"f32", torch::kFloat32, {3, 5}}, {"f16", torch::kFloat16, {2, 3, 2}}, {"bf16", torch::kBFloat16, {7}},
      {"f64", torch::kFloat64, {2, 2}}, {"i64", torch::kInt64, {4}},         {"i32", torch::kInt32, {2, 3}},
      {"i16", torch::kInt16, {5}},      {"i8", torch::kInt8, {6}},           {"u8", torch::kUInt8, {9}},
      {"bool", torch::kBool, {4}}};
  NamedTensors out;
  for (const auto& [name, dtype, shape] : specs) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    torch::Tensor t;
    if (torch::isFloatingType(dtype)) t = torch::arange(n, torch::kFloat64) * 0.25 - 3;
    else if (dtype == torch::kBool) t = torch::arange(n).remainder(2);
    else if (dtype == torch::kUInt8) t = torch::arange(n);
    else t = torch::arange(n) - 2;
    out.emplace_back(name, t.reshape(shape).to(dtype));
  }
  out.emplace_back("empty", torch::zeros({0, 3}));
  return out;
}

const Metadata kInteropMetadata{{"format", "pt"}, {"lofi.test", "\xc3\xbc \xe2\x9c\x93 = 1; \"quoted\""}};

// PyPI's safetensors (the reference implementation) writes, lofi reads: every dtype, value and
// metadata entry; and lofi writes, safetensors reads them back identical.
TEST(SafetensorsInterop, ReferenceLibraryReadsAndWritesWhatLofiDoes) {
  const std::string dir = test::scratch_dir();
  test::CommandResult wrote = test::run_python("safetensors/interop.py", "write " + dir + "/theirs.safetensors");
  ASSERT_EQ(wrote.status, 0) << wrote.output;
  SafetensorsFile theirs(dir + "/theirs.safetensors");
  EXPECT_EQ(theirs.metadata(), kInteropMetadata);
  const NamedTensors want = interop_tensors();
  EXPECT_EQ(theirs.entries().size(), want.size());
  for (const auto& [name, t] : want) {
    torch::Tensor got = theirs.load(name);
    EXPECT_EQ(got.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(got, t)) << name;
  }
  save_safetensors(dir + "/ours.safetensors", want, kInteropMetadata);
  test::CommandResult read = test::run_python("safetensors/interop.py", "read " + dir + "/ours.safetensors");
  std::cout << read.output;
  EXPECT_EQ(read.status, 0) << read.output;
}

}  // namespace
}  // namespace lofi::io
