// lofi prepare: shards hold exactly the tokenizer's ids, whatever the thread count; the validation
// split; uint32 shards for large vocabularies; bad input named by file and line; and the CLI.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "lofi/data/prepare.h"
#include "lofi/data/token_shards.h"
#include "lofi/data/tokenizer.h"
#include "lofi/io/atomic_file.h"
#include "test_util.h"

namespace lofi::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kFixtures = LOFI_FIXTURES "/tokenizer";

std::vector<std::string> corpus_lines() { return json::parse(io::read_text_file(kFixtures + "/expected.json"))["corpus"]; }

// Generated documents with words, numbers, accents, CJK, emoji and line breaks.
std::vector<std::string> generated_documents(int count, uint64_t seed) {
  const char* words[] = {"the", "model", "node", "averaged", "weights", "déjà", "vu", "日本語", "😀", "isn't", "42",
                         "3.14", "  ", "\t", "\n", "lo-fi", "</s>", "<|endoftext|>", "Ünïcödé", "fine-tunes"};
  std::mt19937_64 rng(seed);
  std::vector<std::string> docs;
  for (int d = 0; d < count; ++d) {
    std::string doc;
    int n = static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) doc += std::string(i ? " " : "") + words[rng() % 20];
    docs.push_back(doc);
  }
  return docs;
}

void write_jsonl(const std::string& path, const std::vector<std::string>& docs) {
  std::ofstream out(path, std::ios::binary);
  for (const auto& d : docs) out << json{{"text", d}, {"id", 1}}.dump() << "\n";
}

std::vector<int64_t> read_shards(const std::vector<std::string>& files, int64_t vocab) {
  TokenShards shards(files, vocab);
  std::vector<int64_t> ids(static_cast<size_t>(shards.size()));
  shards.copy(0, shards.size(), ids.data());
  return ids;
}

// What the shards should hold: the end-of-text token, then each document's ids.
std::vector<int64_t> expected_ids(const Tokenizer& tok, const std::vector<std::string>& docs, int64_t offset = 0) {
  std::vector<int64_t> out;
  for (const auto& d : docs) {
    std::vector<uint32_t> ids{tok.end_of_text()};
    tok.encode_ordinary(d, ids);
    for (uint32_t id : ids) out.push_back(id + offset);
  }
  return out;
}

PrepareOptions options(const std::string& tokenizer, const std::string& out, std::vector<std::string> inputs) {
  PrepareOptions o;
  o.tokenizer = tokenizer;
  o.out = out;
  o.inputs = std::move(inputs);
  o.progress = false;
  return o;
}

TEST(Prepare, ShardsHoldTheTokenizersIds) {
  std::string dir = test::scratch_dir();
  auto docs = corpus_lines();
  write_jsonl(dir + "/corpus.jsonl", docs);
  for (const char* variant : {"gpt2", "opt", "llama3", "qwen2", "llama2", "mistral", "gemma"}) {
    Tokenizer tok = Tokenizer::load(kFixtures + "/" + variant);
    PrepareSummary s = prepare_tokens(options(kFixtures + "/" + variant, dir + "/" + variant, {dir + "/corpus.jsonl"}));
    ASSERT_EQ(s.train.files, std::vector<std::string>{dir + "/" + variant + ".train.bin"});
    EXPECT_TRUE(s.val.files.empty());
    EXPECT_EQ(s.train.documents, static_cast<int64_t>(docs.size()));
    EXPECT_EQ(s.token_bytes, 2);
    EXPECT_EQ(read_shards(s.train.files, tok.vocab_size()), expected_ids(tok, docs)) << variant;
  }
  // OPT's layout is Hugging Face's: every document starts with </s>, as tokenizer(text) gives.
  Tokenizer opt = Tokenizer::load(kFixtures + "/opt");
  auto ids = read_shards({dir + "/opt.train.bin"}, opt.vocab_size());
  auto want = opt.encode(docs[0]);
  EXPECT_EQ(std::vector<int64_t>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(want.size())),
            std::vector<int64_t>(want.begin(), want.end()));
}

TEST(Prepare, SameBytesForAnyThreadCountAndShardSize) {
  std::string dir = test::scratch_dir();
  auto docs = generated_documents(12000, 7);  // several 1 MB batches
  write_jsonl(dir + "/docs.jsonl", docs);
  std::string reference;
  for (int threads : {1, 2, 5}) {
    auto o = options(kFixtures + "/gpt2", dir + "/t" + std::to_string(threads), {dir + "/docs.jsonl"});
    o.threads = threads;
    o.val_fraction = 0.05;
    prepare_tokens(o);
    std::string bytes = io::read_text_file(o.out + ".train.bin") + io::read_text_file(o.out + ".val.bin");
    if (reference.empty()) reference = bytes;
    EXPECT_TRUE(bytes == reference) << threads << " threads";
  }
  auto o = options(kFixtures + "/gpt2", dir + "/sharded", {dir + "/docs.jsonl"});
  o.shard_tokens = 100000;
  PrepareSummary s = prepare_tokens(o);
  ASSERT_GT(s.train.files.size(), 2u);
  EXPECT_EQ(s.train.files[1], dir + "/sharded.train-00001.bin");
  Tokenizer tok = Tokenizer::load(kFixtures + "/gpt2");
  for (size_t i = 0; i + 1 < s.train.files.size(); ++i) EXPECT_EQ(TokenShards({s.train.files[i]}, tok.vocab_size()).size(), 100000);
  EXPECT_EQ(read_shards(s.train.files, tok.vocab_size()), expected_ids(tok, docs));
}

TEST(Prepare, ValidationSplitIsByDocumentAndSeeded) {
  std::string dir = test::scratch_dir();
  auto docs = generated_documents(4000, 3);
  write_jsonl(dir + "/docs.jsonl", docs);
  auto o = options(kFixtures + "/gpt2", dir + "/out", {dir + "/docs.jsonl"});
  o.val_fraction = 0.1;
  o.seed = 11;
  PrepareSummary s = prepare_tokens(o);
  EXPECT_EQ(s.train.documents + s.val.documents, 4000);
  EXPECT_NEAR(s.val.documents, 400, 80);
  std::vector<std::string> train, val;
  for (size_t i = 0; i < docs.size(); ++i) (is_validation_document(11, static_cast<int64_t>(i), 0.1) ? val : train).push_back(docs[i]);
  Tokenizer tok = Tokenizer::load(kFixtures + "/gpt2");
  EXPECT_EQ(read_shards(s.train.files, tok.vocab_size()), expected_ids(tok, train));
  EXPECT_EQ(read_shards(s.val.files, tok.vocab_size()), expected_ids(tok, val));
  // Another seed picks other documents.
  int differ = 0;
  for (int64_t i = 0; i < 4000; ++i) differ += is_validation_document(11, i, 0.1) != is_validation_document(12, i, 0.1);
  EXPECT_GT(differ, 300);
}

TEST(Prepare, LongPlainTextIsCutWithoutChangingIds) {
  std::string dir = test::scratch_dir();
  std::string text;
  for (const auto& d : generated_documents(60000, 5)) text += d + (d.size() % 3 ? "\n" : " \n\n");
  ASSERT_GT(text.size(), 9u << 20);  // more than two 4 MB parts
  std::ofstream(dir + "/long.txt", std::ios::binary) << text;
  std::ofstream(dir + "/short.txt", std::ios::binary) << "one more document\n";
  // Byte-level BPE (its regex ends pieces at such line breaks) and SentencePiece's (a whole part one
  // piece, whose vocabulary spells a line break alone).
  for (const char* variant : {"gpt2", "llama2"}) {
    PrepareSummary s = prepare_tokens(options(kFixtures + "/" + variant, dir + "/" + variant, {dir + "/long.txt", dir + "/short.txt"}));
    EXPECT_EQ(s.train.documents, 2);
    Tokenizer tok = Tokenizer::load(kFixtures + "/" + variant);
    EXPECT_EQ(read_shards(s.train.files, tok.vocab_size()), expected_ids(tok, {text, "one more document\n"})) << variant;
  }
}

// The GPT-2 fixture with every id moved up by 65536: no id fits uint16.
std::string wide_tokenizer(const std::string& dir) {
  json vocab = json::parse(io::read_text_file(kFixtures + "/gpt2/vocab.json"));
  for (auto& [token, id] : vocab.items()) id = id.get<int64_t>() + 65536;
  fs::create_directories(dir);
  std::ofstream(dir + "/vocab.json") << vocab.dump();
  fs::copy_file(kFixtures + "/gpt2/merges.txt", dir + "/merges.txt");
  return dir;
}

TEST(Prepare, WideVocabularyWritesUint32Shards) {
  std::string dir = test::scratch_dir(), tokdir = wide_tokenizer(dir + "/wide");
  auto docs = corpus_lines();
  write_jsonl(dir + "/corpus.jsonl", docs);
  PrepareSummary s = prepare_tokens(options(tokdir, dir + "/out", {dir + "/corpus.jsonl"}));
  EXPECT_EQ(s.token_bytes, 4);
  std::ifstream in(dir + "/out.train.bin", std::ios::binary);
  int32_t header[3];
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 2);  // llm.c version 2: uint32 ids
  Tokenizer narrow = Tokenizer::load(kFixtures + "/gpt2");
  EXPECT_EQ(read_shards(s.train.files, 65536 + narrow.vocab_size()), expected_ids(narrow, docs, 65536));
}

TEST(Prepare, BadInputIsNamedByFileAndLine) {
  std::string dir = test::scratch_dir();
  auto error = [&](const std::string& input) {
    return test::error_of([&] { prepare_tokens(options(kFixtures + "/gpt2", dir + "/out", {input})); });
  };
  std::ofstream(dir + "/bad.jsonl") << "{\"text\": \"fine\"}\n\n{\"text\": \"also fine\"}\n{\"text\": broken\n";
  EXPECT_NE(error(dir + "/bad.jsonl").find("bad.jsonl:4: not valid JSON"), std::string::npos) << error(dir + "/bad.jsonl");
  std::ofstream(dir + "/notext.jsonl") << "{\"text\": \"fine\"}\n{\"body\": \"no text\"}\n";
  EXPECT_NE(error(dir + "/notext.jsonl").find("notext.jsonl:2: expected an object with a string \"text\""), std::string::npos);
  std::ofstream(dir + "/utf8.jsonl") << "{\"text\": \"fine\"}\n";
  std::ofstream(dir + "/bin.txt", std::ios::binary) << "ok \xff\xfe not text";
  EXPECT_NE(error(dir + "/bin.txt").find("bin.txt: text is not valid UTF-8 at byte 3"), std::string::npos) << error(dir + "/bin.txt");
  EXPECT_NE(error(dir + "/missing.txt").find("missing.txt: cannot read"), std::string::npos);
  EXPECT_NE(error(dir).find("is a directory"), std::string::npos);
  auto tokerr = test::error_of([&] { prepare_tokens(options(dir + "/nothing", dir + "/out", {dir + "/utf8.jsonl"})); });
  EXPECT_NE(tokerr.find("nothing: not a tokenizer directory"), std::string::npos);
  // JSON that is no JSON lines, or nothing at all, is named rather than tokenized as text.
  std::ofstream(dir + "/array.json") << "[{\"text\": \"a\"}, {\"text\": \"b\"}]\n";
  EXPECT_NE(error(dir + "/array.json").find("a JSON array"), std::string::npos) << error(dir + "/array.json");
  std::ofstream(dir + "/other.json") << "{\"content\": \"a\"}\n";
  EXPECT_NE(error(dir + "/other.json").find("other.json:1: expected an object with a string \"text\""), std::string::npos);
  std::ofstream(dir + "/empty.jsonl") << "\n  \n";
  EXPECT_NE(error(dir + "/empty.jsonl").find("no document in"), std::string::npos) << error(dir + "/empty.jsonl");
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().string().find(dir + "/out"), std::string::npos) << e.path();
}

// A second prepare onto one prefix leaves none of the first's files beside its own (a val split, or
// shards past its last), and a directory as --out holds train.bin, not a hidden .train.bin.
TEST(Prepare, AnEarlierPreparesFilesOfThePrefixAreRemoved) {
  const std::string dir = test::scratch_dir();
  write_jsonl(dir + "/a.jsonl", generated_documents(60, 1));
  write_jsonl(dir + "/b.jsonl", generated_documents(10, 2));
  PrepareOptions first = options(kFixtures + "/gpt2", dir + "/web", {dir + "/a.jsonl"});
  first.val_fraction = 0.2;
  first.shard_tokens = 200;
  const PrepareSummary a = prepare_tokens(first);
  ASSERT_GT(a.train.files.size(), 2u);
  ASSERT_FALSE(a.val.files.empty());
  const PrepareSummary b = prepare_tokens(options(kFixtures + "/gpt2", dir + "/web", {dir + "/b.jsonl"}));
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("web.", 0) == 0) left.push_back(e.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"web.train.bin"});
  EXPECT_EQ(b.removed.size(), a.train.files.size() + a.val.files.size());
  fs::create_directories(dir + "/into");
  const PrepareSummary c = prepare_tokens(options(kFixtures + "/gpt2", dir + "/into", {dir + "/b.jsonl"}));
  EXPECT_EQ(c.train.files, std::vector<std::string>{dir + "/into/train.bin"});
}

TEST(CliPrepare, EndToEndThroughTheBinary) {
  std::string dir = test::scratch_dir();
  auto docs = corpus_lines();
  write_jsonl(dir + "/a.jsonl", docs);
  std::ofstream(dir + "/b.txt", std::ios::binary) << "A plain text file,\nwith two lines.\n";
  auto help = test::run_lofi("prepare --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.output.find("--shard-tokens"), std::string::npos);
  auto r = test::run_lofi("prepare --tokenizer " + kFixtures + "/opt --out " + dir + "/data " + dir + "/a.jsonl " + dir +
                          "/b.txt --threads 2 --val-fraction 0.3 --seed 4");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("prepare: 100.0%"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train: "), std::string::npos) << r.output;
  docs.push_back("A plain text file,\nwith two lines.\n");
  std::vector<std::string> train, val;
  for (size_t i = 0; i < docs.size(); ++i) (is_validation_document(4, static_cast<int64_t>(i), 0.3) ? val : train).push_back(docs[i]);
  ASSERT_FALSE(val.empty());
  Tokenizer tok = Tokenizer::load(kFixtures + "/opt");
  EXPECT_EQ(read_shards({dir + "/data.train.bin"}, tok.vocab_size()), expected_ids(tok, train));
  EXPECT_EQ(read_shards({dir + "/data.val.bin"}, tok.vocab_size()), expected_ids(tok, val));

  std::string wide = wide_tokenizer(dir + "/wide");
  r = test::run_lofi("prepare -t " + wide + " -o " + dir + "/wide " + dir + "/a.jsonl --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("(uint32)"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("prepare:"), std::string::npos) << r.output;

  std::ofstream(dir + "/bad.jsonl") << "{\"text\": \"x\"}\n[1, 2]\n";
  r = test::run_lofi("prepare -t " + kFixtures + "/gpt2 -o " + dir + "/bad " + dir + "/bad.jsonl");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("lofi: error: " + dir + "/bad.jsonl:2: expected an object"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/bad.train.bin"));
}

TEST(CliPrepare, TrainAndEvalReadUint32Shards) {
  std::string dir = test::scratch_dir(), wide = wide_tokenizer(dir + "/wide");
  write_jsonl(dir + "/docs.jsonl", generated_documents(200, 9));
  auto r = test::run_lofi("prepare -t " + wide + " -o " + dir + "/data --quiet " + dir + "/docs.jsonl");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string vocab = " --set model.vocab_size=" + std::to_string(Tokenizer::load(wide).vocab_size());
  r = test::run_lofi("train --quiet " + test::tiny_train_flags(dir + "/data.train.bin", dir + "/run") + vocab);
  ASSERT_EQ(r.status, 0) << r.output;
  r = test::run_lofi("eval --model " + dir + "/run/node-00/final.safetensors --data wide=" + dir + "/data.train.bin --max-windows 4");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("wide loss"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lofi::data
