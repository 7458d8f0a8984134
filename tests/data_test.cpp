#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "lofi/data/sampler.h"
#include "lofi/demo/synthetic_text.h"
#include "lofi/data/token_shards.h"
#include "lofi/error.h"
#include "test_util.h"

namespace lofi::data {
namespace {

TEST(TokenShards, ReadsLlmcAndRawFilesAsOneStream) {
  std::string dir = test::scratch_dir();
  write_token_shard(dir + "/a.bin", {1, 2, 3, 4});
  std::vector<uint16_t> raw{5, 6, 7};
  std::ofstream(dir + "/b.u16", std::ios::binary).write(reinterpret_cast<const char*>(raw.data()), 6);
  TokenShards shards({dir + "/a.bin", dir + "/b.u16"}, 10);  // *.u16: raw by its name
  ASSERT_EQ(shards.size(), 7);
  std::vector<int64_t> out(5);
  shards.copy(2, 5, out.data());  // crosses the file boundary
  EXPECT_EQ(out, (std::vector<int64_t>{3, 4, 5, 6, 7}));
}

// Headerless ids are read only where the user says so: by data.format or the *.u16 name.
TEST(TokenShards, RawIdsOnlyWhenDeclared) {
  std::string dir = test::scratch_dir();
  std::vector<uint16_t> raw{5, 6, 7, 8};
  std::ofstream(dir + "/ids.bin", std::ios::binary).write(reinterpret_cast<const char*>(raw.data()), 8);
  const std::string refused = test::error_of([&] { TokenShards({dir + "/ids.bin"}, 10); });
  EXPECT_NE(refused.find("ids.bin: not an llm.c token file"), std::string::npos) << refused;
  EXPECT_NE(refused.find("data.format = \"raw-u16\""), std::string::npos) << refused;
  EXPECT_NE(refused.find("lofi prepare"), std::string::npos) << refused;
  EXPECT_NE(test::error_of([&] { TokenShards({dir + "/ids.bin"}, 10, "llm.c"); }).find("not an llm.c token file"), std::string::npos);
  TokenShards declared({dir + "/ids.bin"}, 10, "raw-u16");
  EXPECT_EQ(declared.size(), 4);
  EXPECT_EQ(declared.token(3), 8);
  // Declared raw, but it has llm.c's header: the declaration is wrong, not the file.
  write_token_shard(dir + "/real.bin", {1, 2});
  EXPECT_NE(test::error_of([&] { TokenShards({dir + "/real.bin"}, 10, "raw-u16"); }).find("starts with llm.c's header"), std::string::npos);
  EXPECT_NE(test::error_of([&] { TokenShards({dir + "/real.bin"}, 10, "bin"); }).find("data.format"), std::string::npos);
}

// Bytes past the count the header declares are a torn or concatenated file, not ignored.
TEST(TokenShards, TrailingBytesAreAnError) {
  std::string dir = test::scratch_dir();
  write_token_shard(dir + "/a.bin", {1, 2, 3});
  std::ofstream(dir + "/a.bin", std::ios::binary | std::ios::app) << "xy";
  const std::string error = test::error_of([&] { TokenShards({dir + "/a.bin"}, 10); });
  EXPECT_NE(error.find("a.bin: 2 bytes after the 3 tokens its header declares"), std::string::npos) << error;
}

// A file truncated or rewritten while a run reads it: one clear error naming it, never SIGBUS
// (reads go through pread, not the mapping) and never an id past the vocabulary.
TEST(TokenShards, AFileChangedUnderTheReaderIsOneClearError) {
  std::string dir = test::scratch_dir();
  std::vector<uint32_t> ids(100000, 3);
  write_token_shard(dir + "/a.bin", ids);
  TokenShards shards({dir + "/a.bin"}, 10);
  std::vector<int64_t> out(16);
  shards.copy(99000, 16, out.data());
  EXPECT_EQ(out[0], 3);
  std::filesystem::resize_file(dir + "/a.bin", 1024 + 2 * 50000);  // half the tokens gone
  std::string error = test::error_of([&] { shards.copy(99000, 16, out.data()); });
  EXPECT_NE(error.find("a.bin: the file ends before byte"), std::string::npos) << error;
  EXPECT_NE(error.find("truncated or rewritten while in use"), std::string::npos) << error;
  // Rewritten in place with ids the vocabulary does not have.
  {
    std::fstream f(dir + "/a.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1024 + 2 * 100);
    const uint16_t bad = 9999;
    f.write(reinterpret_cast<const char*>(&bad), 2);
  }
  error = test::error_of([&] { shards.copy(100, 4, out.data()); });
  EXPECT_NE(error.find("a.bin: token 100 has id 9999 now"), std::string::npos) << error;
}

TEST(TokenShards, WideIdsUseUint32) {
  std::string dir = test::scratch_dir();
  write_token_shard(dir + "/w.bin", {70000, 1});
  TokenShards shards({dir + "/w.bin"}, 100000);
  EXPECT_EQ(shards.token(0), 70000);
  EXPECT_EQ(std::filesystem::file_size(dir + "/w.bin"), 1024u + 8u);
}

TEST(TokenShards, BadFilesAreNamed) {
  std::string dir = test::scratch_dir();
  EXPECT_NE(test::error_of([&] { TokenShards({dir + "/missing.bin"}, 10); }).find("missing.bin"), std::string::npos);
  std::ofstream(dir + "/empty.bin");
  EXPECT_NE(test::error_of([&] { TokenShards({dir + "/empty.bin"}, 10); }).find("empty"), std::string::npos);
  write_token_shard(dir + "/big.bin", {1, 2, 300});
  EXPECT_NE(test::error_of([&] { TokenShards({dir + "/big.bin"}, 256); }).find("id 300"), std::string::npos);
  write_token_shard(dir + "/cut.bin", std::vector<uint32_t>(100, 1));
  std::filesystem::resize_file(dir + "/cut.bin", 1024 + 50);
  EXPECT_NE(test::error_of([&] { TokenShards({dir + "/cut.bin"}, 10); }).find("truncated"), std::string::npos);
  std::ofstream(dir + "/odd.u16") << "abc";
  EXPECT_NE(test::error_of([&] { TokenShards({dir + "/odd.u16"}, 1000); }).find("odd size"), std::string::npos);
}

TEST(Sampler, SameInputsSameWindows) {
  WindowSampler a({0, 10000}, 65, 7, 0), b({0, 10000}, 65, 7, 0);
  EXPECT_EQ(a.batch_starts(3, 16), b.batch_starts(3, 16));
  EXPECT_NE(a.batch_starts(3, 16), a.batch_starts(4, 16));  // a new batch each step
  WindowSampler other_node({0, 10000}, 65, 7, 1), other_seed({0, 10000}, 65, 8, 0);
  EXPECT_NE(a.batch_starts(3, 16), other_node.batch_starts(3, 16));  // each node its own order
  EXPECT_NE(a.batch_starts(3, 16), other_seed.batch_starts(3, 16));
  // A batch's prefix does not depend on its size: workers can split a node batch freely.
  auto big = a.batch_starts(3, 16), small = a.batch_starts(3, 8);
  EXPECT_TRUE(std::equal(small.begin(), small.end(), big.begin()));
}

TEST(Sampler, WindowsStayInsideTheRange) {
  WindowSampler s({100, 300}, 65, 1, 0);
  for (int64_t step = 0; step < 50; ++step)
    for (int64_t start : s.batch_starts(step, 32)) {
      EXPECT_GE(start, 100);
      EXPECT_LE(start + 65, 300);
    }
  EXPECT_THROW(WindowSampler({0, 64}, 65, 1, 0), lofi::Error);
}

TEST(Sampler, ShardSplitIsDisjointAndCovering) {
  const int64_t total = 1003, nodes = 4;
  int64_t expected_begin = 0;
  for (int64_t k = 0; k < nodes; ++k) {
    TokenRange r = node_token_range(total, nodes, k, "shard");
    EXPECT_EQ(r.begin, expected_begin);
    EXPECT_GT(r.end, r.begin);
    expected_begin = r.end;
    WindowSampler s(r, 17, 3, k);
    for (int64_t start : s.batch_starts(0, 64)) EXPECT_TRUE(start >= r.begin && start + 17 <= r.end);
  }
  EXPECT_EQ(expected_begin, total);
  TokenRange all = node_token_range(total, nodes, 2, "shuffle");
  EXPECT_EQ(all.begin, 0);
  EXPECT_EQ(all.end, total);
}

TEST(SyntheticText, DeterministicAndDistinct) {
  auto a = demo::synthetic_corpus("sums", 2000, 5), b = demo::synthetic_corpus("sums", 2000, 5);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, demo::synthetic_corpus("sums", 2000, 6));
  std::string text(a.begin(), a.begin() + 40);
  EXPECT_NE(text.find('+'), std::string::npos);
  EXPECT_NE(text.find('='), std::string::npos);
  std::set<std::string> heads;
  for (const auto& name : demo::synthetic_corpus_names()) {
    auto ids = demo::synthetic_corpus(name, 100, 1);
    heads.insert(std::string(ids.begin(), ids.begin() + 30));
  }
  EXPECT_EQ(heads.size(), demo::synthetic_corpus_names().size());
}

}  // namespace
}  // namespace lofi::data
