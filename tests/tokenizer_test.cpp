// The tokenizer against Hugging Face's own implementation (fixtures/tokenizer/expected.json, written
// by make_fixture.mjs), both file formats; special tokens; and bad tokenizer directories.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lofi/data/bpe.h"
#include "lofi/data/pretokenize.h"
#include "lofi/data/tokenizer.h"
#include "lofi/io/atomic_file.h"
#include "test_util.h"

namespace lofi::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kFixtures = LOFI_FIXTURES "/tokenizer";

const json& expected() {
  static const json j = json::parse(io::read_text_file(kFixtures + "/expected.json"));
  return j;
}

// Every corpus line gives the reference's ids and decoding. ADDS_PREFIX: OPT's "</s>"; ROUND_TRIP:
// decoding gives the text back (not so where added tokens strip whitespace).
void expect_matches_reference(const std::string& variant, const Tokenizer& tok, bool adds_prefix, bool round_trip = true) {
  const json& corpus = expected()["corpus"];
  ASSERT_GE(corpus.size(), 20u);
  for (size_t i = 0; i < corpus.size(); ++i) {
    std::string text = corpus[i];
    const json& want = expected()[variant][i];
    auto ids = tok.encode(text);
    EXPECT_EQ(ids, want["ids"].get<std::vector<uint32_t>>()) << variant << " line " << i << ": " << text;
    EXPECT_EQ(tok.encode(text, false), want["ids_without_special"].get<std::vector<uint32_t>>()) << variant << " line " << i;
    EXPECT_EQ(tok.decode(ids), want["decoded"].get<std::string>()) << variant << " line " << i;
    if (!round_trip) continue;
    EXPECT_EQ(tok.decode(ids), (adds_prefix ? "</s>" : "") + text) << variant << " line " << i;
    EXPECT_EQ(tok.decode(tok.encode(text, false)), text) << variant << " line " << i;
  }
}

TEST(Tokenizer, Gpt2MatchesHuggingFaceFromVocabAndMerges) {
  expect_matches_reference("gpt2", Tokenizer::from_vocab_merges(kFixtures + "/gpt2"), false);
}

TEST(Tokenizer, Gpt2MatchesHuggingFaceFromTokenizerJson) {
  expect_matches_reference("gpt2", Tokenizer::from_tokenizer_json(kFixtures + "/gpt2"), false);
}

TEST(Tokenizer, OptMatchesHuggingFaceFromVocabAndMerges) {
  expect_matches_reference("opt", Tokenizer::from_vocab_merges(kFixtures + "/opt"), true);
}

TEST(Tokenizer, OptMatchesHuggingFaceFromTokenizerJson) {
  expect_matches_reference("opt", Tokenizer::from_tokenizer_json(kFixtures + "/opt"), true);
}

TEST(Tokenizer, StrippingAddedTokensAndPrefixSpaceMatchHuggingFace) {
  expect_matches_reference("added", Tokenizer::from_tokenizer_json(kFixtures + "/added"), false, false);
}

TEST(Tokenizer, SpecialTokensAndEndOfText) {
  Tokenizer gpt2 = Tokenizer::load(kFixtures + "/gpt2"), opt = Tokenizer::load(kFixtures + "/opt");
  uint32_t eot = *gpt2.token_id("<|endoftext|>");
  EXPECT_EQ(gpt2.end_of_text(), eot);
  EXPECT_EQ(opt.end_of_text(), 2u);
  EXPECT_EQ(opt.prefix(), std::vector<uint32_t>{2});
  EXPECT_TRUE(gpt2.prefix().empty());
  EXPECT_EQ(gpt2.encode("<|endoftext|>"), std::vector<uint32_t>{eot});
  // encode_ordinary reads special tokens as text, and adds nothing.
  std::vector<uint32_t> ordinary;
  opt.encode_ordinary("a</s>b", ordinary);
  EXPECT_EQ(std::count(ordinary.begin(), ordinary.end(), 2u), 0);
  EXPECT_EQ(opt.decode(ordinary), "a</s>b");
  EXPECT_EQ(opt.decode(opt.encode("x</s>y"), /*skip_special_tokens=*/true), "xy");
  EXPECT_EQ(gpt2.vocab_size(), eot + 1);
  EXPECT_NE(test::error_of([&] { gpt2.decode({gpt2.vocab_size() + 5}); }).find("not in the vocabulary"), std::string::npos);
}

TEST(Tokenizer, PretokenizerPiecesCoverTheText) {
  RegexSplitter split(kGpt2Pattern);
  std::vector<std::string_view> pieces;
  split.split("Hello  world's 123\n\n x", pieces);
  std::vector<std::string> got(pieces.begin(), pieces.end());
  EXPECT_EQ(got, (std::vector<std::string>{"Hello", " ", " world", "'s", " 123", "\n\n", " x"}));
  pieces.clear();
  std::string bad = test::error_of([&] { split.split("ok \xff bad", pieces); });
  EXPECT_NE(bad.find("not valid UTF-8 at byte 3"), std::string::npos) << bad;
}

TEST(Tokenizer, LongWhitespaceAndRepeatsStayFast) {
  Tokenizer tok = Tokenizer::load(kFixtures + "/gpt2");
  std::string text = std::string(200000, ' ') + "x" + std::string(100000, 'a');
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
}

// Writes a tokenizer directory: the fixture's files with some replaced.
std::string tokenizer_dir(const std::string& name, const std::map<std::string, std::string>& files) {
  std::string dir = test::scratch_dir() + "/" + name;
  fs::create_directories(dir);
  for (const char* f : {"vocab.json", "merges.txt"}) fs::copy_file(kFixtures + "/gpt2/" + f, dir + "/" + f);
  for (const auto& [f, text] : files) {
    if (text.empty()) fs::remove(dir + "/" + f);
    else std::ofstream(dir + "/" + f) << text;
  }
  return dir;
}

TEST(Tokenizer, BadDirectoriesAreNamed) {
  auto error = [](const std::string& dir) { return test::error_of([&] { Tokenizer::load(dir); }); };
  std::string base = test::scratch_dir();
  EXPECT_NE(error(base + "/nope").find("not a tokenizer directory"), std::string::npos);
  EXPECT_NE(error(base).find("no tokenizer.json"), std::string::npos);
  EXPECT_NE(error(tokenizer_dir("nomerges", {{"merges.txt", ""}})).find("merges.txt: missing"), std::string::npos);
  EXPECT_NE(error(tokenizer_dir("novocab", {{"vocab.json", ""}})).find("vocab.json: missing"), std::string::npos);
  EXPECT_NE(error(tokenizer_dir("badjson", {{"vocab.json", "{\"a\": 1,"}})).find("vocab.json: not valid JSON"), std::string::npos);
  EXPECT_NE(error(tokenizer_dir("badid", {{"vocab.json", "{\"a\": -1}"}})).find("token 'a' has id -1"), std::string::npos);
  std::string merges = io::read_text_file(kFixtures + "/gpt2/merges.txt");
  EXPECT_NE(error(tokenizer_dir("badline", {{"merges.txt", merges + "abc\n"}})).find("expected two tokens"), std::string::npos);
  std::string unknown = error(tokenizer_dir("unknown", {{"merges.txt", "#version: 0.2\nĠ zzzz\n"}}));
  EXPECT_NE(unknown.find("merges.txt:2: merge 'Ġ zzzz' needs 'zzzz'"), std::string::npos) << unknown;
  std::string eos = error(tokenizer_dir("eos", {{"tokenizer_config.json", R"({"add_bos_token": true, "bos_token": "<nope>"})"}}));
  EXPECT_NE(eos.find("'<nope>' is neither in vocab.json nor an added token"), std::string::npos) << eos;
  const std::string spm = base + "/spm";
  fs::create_directories(spm);
  std::ofstream(spm + "/tokenizer.model") << "not read";
  EXPECT_NE(error(spm).find("tokenizer.model (SentencePiece) without tokenizer.json; write the tokenizer.json that transformers"),
            std::string::npos)
      << error(spm);
  std::string json_dir = tokenizer_dir("wordpiece", {{"tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})"}});
  EXPECT_NE(error(json_dir).find("model.type = \"WordPiece\" is not supported: lofi reads BPE tokenizers"), std::string::npos);
}

TEST(Tokenizer, ByteLevelTableRoundTrips) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  EXPECT_EQ(byte_level_decode(byte_level_encode(all)), all);
  EXPECT_EQ(byte_level_encode(" a\n"), "ĠaĊ");
}

}  // namespace
}  // namespace lofi::data

namespace lofi::data {
namespace {

// expected.json (which the tests above hold lofi to) is also what Hugging Face's Rust `tokenizers`
// gives, id for id, for every variant and corpus line.
TEST(TokenizerGolden, ExpectedIdsAreHuggingFaceTokenizers) {
  test::CommandResult check = test::run_python("tokenizer/check_with_tokenizers.py", "");
  std::cout << check.output;
  EXPECT_EQ(check.status, 0) << check.output;
}

}  // namespace
}  // namespace lofi::data

namespace lofi::data {
namespace {

// The tokenizers of today's decoders, as their tokenizer.json lays them out (Split with the
// family's regex, then ByteLevel; Llama 3's <|begin_of_text|> first; Qwen2's NFC normalizer), made
// by make_llama3_qwen2.py: lofi's ids equal Hugging Face `tokenizers`' on the corpus and on text
// that needs composing, long numbers and special tokens.
// DIR_OF_VARIANT: the tokenizer's directory (default the fixture VARIANT); SCRATCH: the test's
// scratch directory (default a new one).
void expect_matches_tokenizers(const std::string& variant, const std::vector<std::string>& extra, std::string dir_of_variant = "",
                               std::string scratch = "") {
  if (dir_of_variant.empty()) dir_of_variant = kFixtures + "/" + variant;
  if (scratch.empty()) scratch = test::scratch_dir();
  std::vector<std::string> texts = expected()["corpus"].get<std::vector<std::string>>();
  texts.insert(texts.end(), extra.begin(), extra.end());
  const std::string texts_path = scratch + "/texts.json";
  io::write_file_atomic(texts_path, json(texts).dump());
  const test::CommandResult reference =
      test::run_python("tokenizer/encode_with_tokenizers.py", dir_of_variant + " " + texts_path);
  ASSERT_EQ(reference.status, 0) << reference.output;
  const json want = json::parse(reference.output);
  ASSERT_EQ(want.size(), texts.size());
  const Tokenizer tok = Tokenizer::load(dir_of_variant);
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = tok.encode(texts[i]);
    EXPECT_EQ(ids, want[i]["ids"].get<std::vector<uint32_t>>()) << variant << " text " << i << ": " << texts[i];
    EXPECT_EQ(tok.encode(texts[i], false), want[i]["ids_without_special"].get<std::vector<uint32_t>>())
        << variant << " text " << i << ": " << texts[i];
    EXPECT_EQ(tok.decode(ids), want[i]["decoded"].get<std::string>()) << variant << " text " << i;
    EXPECT_EQ(tok.decode(tok.encode(texts[i], false)), want[i]["decoded_without_special"].get<std::string>()) << variant << " text " << i;
  }
}

const std::vector<std::string> kHardTexts = {
    "Cafe\xcc\x81 e\xcc\x81te\xcc\x81 \xe1\x84\x80\xe1\x85\xa1",  // decomposed: NFC composes e + U+0301, jamo
    "numbers 1234567890 12 345 6789 3.14159265358979",
    "digits\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93 \xd9\xa1\xd9\xa2\xd9\xa3",  // fullwidth and Arabic-Indic digits
    "\xe2\x84\xab \xef\xac\x81 \xe2\x84\xa6",  // Angstrom sign, fi ligature, Ohm sign: NFC maps two of them
    "I'M HERE, you're there; THEY'LL see \r\n\r\n  twice\n",
};

TEST(TokenizerGolden, Llama3MatchesTokenizers) {
  std::vector<std::string> extra = kHardTexts;
  extra.push_back("<|begin_of_text|>system<|eot_id|>hello<|end_of_text|> <|eot_id|>");
  expect_matches_tokenizers("llama3", extra);
  const Tokenizer tok = Tokenizer::load(kFixtures + "/llama3");
  EXPECT_EQ(tok.encode("hi").front(), *tok.token_id("<|begin_of_text|>"));
  EXPECT_EQ(tok.end_of_text(), *tok.token_id("<|end_of_text|>"));  // tokenizer_config.json's eos_token: prepare's separator
}

TEST(TokenizerGolden, Qwen2MatchesTokenizers) {
  std::vector<std::string> extra = kHardTexts;
  extra.push_back("<|im_start|>user\nCafe\xcc\x81?<|im_end|>\n<|im_start|>assistant\n<|endoftext|>");
  expect_matches_tokenizers("qwen2", extra);
  // NFC composes before BPE: the decomposed and the composed spelling give the same ids.
  const Tokenizer tok = Tokenizer::load(kFixtures + "/qwen2");
  EXPECT_EQ(tok.encode("Cafe\xcc\x81"), tok.encode("Caf\xc3\xa9"));
  EXPECT_EQ(tok.end_of_text(), *tok.token_id("<|endoftext|>"));
}

TEST(Tokenizer, RefusesANormalizerByName) {
  const std::string dir = test::scratch_dir();
  json j = json::parse(io::read_text_file(kFixtures + "/qwen2/tokenizer.json"));
  j["normalizer"] = {{"type", "NFKD"}};
  io::write_file_atomic(dir + "/tokenizer.json", j.dump());
  const std::string why = test::error_of([&] { Tokenizer::load(dir); });
  EXPECT_NE(why.find("normalizer NFKD is not supported (lofi honours NFC, as Qwen2's tokenizers use, and SentencePiece"),
            std::string::npos)
      << why;
}

}  // namespace
}  // namespace lofi::data

namespace lofi::data {
namespace {

TEST(Tokenizer, RefusesWhatItDoesNotReadByName) {
  const std::string dir = test::scratch_dir();
  const json llama3 = json::parse(io::read_text_file(kFixtures + "/llama3/tokenizer.json"));
  json j = llama3;
  j["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};  // T5's, and SentencePiece Unigram conversions'
  io::write_file_atomic(dir + "/tokenizer.json", j.dump());
  std::string why = test::error_of([&] { Tokenizer::load(dir); });
  EXPECT_NE(why.find("model.type = \"Unigram\" is not supported"), std::string::npos) << why;
  // A byte-level model read through SentencePiece's decoder: ids that would decode to the wrong text.
  j = llama3;
  j["decoder"] = json::parse(io::read_text_file(kFixtures + "/llama2/tokenizer.json"))["decoder"];
  io::write_file_atomic(dir + "/tokenizer.json", j.dump());
  why = test::error_of([&] { Tokenizer::load(dir); });
  EXPECT_NE(why.find("does not fit the model: expected ByteLevel"), std::string::npos) << why;
  j = json::parse(io::read_text_file(kFixtures + "/mistral/tokenizer.json"));
  j["model"]["dropout"] = 0.1;
  io::write_file_atomic(dir + "/tokenizer.json", j.dump());
  why = test::error_of([&] { Tokenizer::load(dir); });
  EXPECT_NE(why.find("model.dropout = 0.1 is not supported"), std::string::npos) << why;
  j = json::parse(io::read_text_file(kFixtures + "/mistral/tokenizer.json"));
  j["pre_tokenizer"]["prepend_scheme"] = "sometimes";
  io::write_file_atomic(dir + "/tokenizer.json", j.dump());
  why = test::error_of([&] { Tokenizer::load(dir); });
  EXPECT_NE(why.find("prepend_scheme 'sometimes' is not one of always, first, never"), std::string::npos) << why;
  j = json::parse(io::read_text_file(kFixtures + "/llama2/tokenizer.json"));
  j["normalizer"]["normalizers"][1]["pattern"] = {{"Regex", " +"}};
  io::write_file_atomic(dir + "/tokenizer.json", j.dump());
  why = test::error_of([&] { Tokenizer::load(dir); });
  EXPECT_NE(why.find("normalizer Replace of a regex is not supported"), std::string::npos) << why;
  // Gemma's Split on " " cuts nothing only after its normalizer has replaced every space.
  j = json::parse(io::read_text_file(kFixtures + "/gemma/tokenizer.json"));
  ASSERT_NO_THROW(Tokenizer::load(kFixtures + "/gemma"));
  const json replace = j["normalizer"];
  for (const json& normalizer : {json(), json{{"type", "Sequence"},
                                              {"normalizers", {replace, {{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}},
                                                                          {"content", " "}}}}}}) {
    j["normalizer"] = normalizer;  // none, or one that writes the spaces back
    io::write_file_atomic(dir + "/tokenizer.json", j.dump());
    why = test::error_of([&] { Tokenizer::load(dir); });
    EXPECT_NE(why.find("is not supported (expected ByteLevel, Metaspace, or a Split on spaces the normalizer has replaced)"),
              std::string::npos) << normalizer.dump() << ": " << why;
  }
}

// SentencePiece's BPE as transformers converts it (make_sentencepiece.py): Llama 2's layout (a
// Prepend + Replace normalizer, which Hugging Face applies to every part between special tokens),
// Mistral's (Metaspace, "▁" put first only at the start of the input) and Metaspace split at each
// "▁" with the Metaspace decoder. Characters outside the vocabulary (emoji, most CJK) fall back
// to <0xXX> byte tokens, which decode back to their UTF-8 (or U+FFFD where a run is cut short).
const std::vector<std::string> kSentencePieceTexts = {
    " leading space", "  two leading spaces", "trailing space ", "<s>after bos", "text<s>text</s> more</s>",
    "<s> spaced</s>", "\xf0\x9f\xa6\x99 \xe2\x80\x94 \xd0\x96\xd0\xb8\xd0\xb2", "a\n\nb\n c\t\td", "",
    "<s>[INST] What is 2+2? [/INST] 4</s>", "a\xe2\x96\x81" "b \xe2\x96\x81\xe2\x96\x81 c",  // "▁" written in the text
    "<|im_start|>user hi<|im_end|>\n<|im_start|>assistant", "ok </s><s>[INST]", "ok</s>",
    "<bos><start_of_turn>user\nhi there<end_of_turn>\n<start_of_turn>model\n", "ok<eos> <pad>",
};

TEST(TokenizerGolden, SentencePieceBpeMatchesTokenizers) {
  std::vector<std::string> extra = kHardTexts;
  extra.insert(extra.end(), kSentencePieceTexts.begin(), kSentencePieceTexts.end());
  const std::string scratch = test::scratch_dir();
  for (const char* variant : {"llama2", "mistral", "metaspace-split", "gemma"}) expect_matches_tokenizers(variant, extra, "", scratch);
  // Added tokens as Hugging Face splits on them: those with normalized: false in the raw text, the
  // others in the normalised text as the normaliser writes them (some Llama 2 copies mark <s> and
  // </s> normalized: true: "▁</s>" is matched, "ok</s>" is spelled out); ChatML's tokens added
  // normalized (add_tokens' default).
  for (const char* variant : {"llama2", "mistral"}) {
    json j = json::parse(io::read_text_file(kFixtures + "/" + variant + "/tokenizer.json"));
    for (auto& a : j["added_tokens"]) a["normalized"] = true;
    const uint32_t next = static_cast<uint32_t>(j["model"]["vocab"].size());
    j["added_tokens"].push_back({{"id", next}, {"content", "<|im_start|>"}, {"single_word", false}, {"lstrip", false},
                                 {"rstrip", false}, {"normalized", true}, {"special", false}});
    j["added_tokens"].push_back({{"id", next + 1}, {"content", "<|im_end|>"}, {"single_word", false}, {"lstrip", false},
                                 {"rstrip", false}, {"normalized", false}, {"special", false}});
    const std::string dir = scratch + "/" + variant;
    fs::create_directories(dir);
    io::write_file_atomic(dir + "/tokenizer.json", j.dump());
    fs::copy_file(kFixtures + "/" + variant + "/tokenizer_config.json", dir + "/tokenizer_config.json");
    expect_matches_tokenizers(std::string(variant) + " (normalized added tokens)", extra, dir, scratch);
    const Tokenizer tok = Tokenizer::load(dir);
    for (const std::string& text : extra) {
      const auto ids = tok.encode(text, false);
      EXPECT_EQ(ids.empty() ? 0 : tok.token_ends(text, ids).back(), text.size()) << variant << ": " << text;
    }
  }
  const Tokenizer tok = Tokenizer::load(kFixtures + "/llama2");
  EXPECT_EQ(tok.encode("hi").front(), *tok.token_id("<s>"));
  EXPECT_EQ(tok.end_of_text(), *tok.token_id("</s>"));
  EXPECT_TRUE(tok.line_breaks_end_pieces());  // Llama 2 spells a line break <0x0A>
  EXPECT_EQ(tok.encode("\n", false), (std::vector<uint32_t>{*tok.token_id("\xe2\x96\x81"), *tok.token_id("<0x0A>")}));
  // A vocabulary with a symbol that joins a line break to more: prepare may not cut there.
  const std::string dir = test::scratch_dir();
  json j = json::parse(io::read_text_file(kFixtures + "/llama2/tokenizer.json"));
  j["model"]["vocab"]["\n\n"] = j["model"]["vocab"].size();
  io::write_file_atomic(dir + "/tokenizer.json", j.dump());
  EXPECT_FALSE(Tokenizer::load(dir).line_breaks_end_pieces());
  // A rune outside the vocabulary: its four UTF-8 bytes, and a run cut short decodes to U+FFFD each.
  const std::vector<uint32_t> crab = tok.encode("\xf0\x9f\xa6\x99", false);
  ASSERT_EQ(crab.size(), 5u);  // "▁", then <0xF0> <0x9F> <0xA6> <0x99>
  EXPECT_EQ(tok.decode({crab[1], crab[2], crab[3], crab[4]}), "\xf0\x9f\xa6\x99");
  EXPECT_EQ(tok.decode({crab[1], crab[2]}), "\xef\xbf\xbd\xef\xbf\xbd");
}

// token_ends places each id in the text it came from (chat data's loss masks): the "▁" a prefix
// scheme put before a part spans no byte of it.
// Added tokens' single_word, lstrip and rstrip as Hugging Face reads them: Unicode's word characters
// and whitespace, and a match inside a word passed over whole.
TEST(TokenizerGolden, SingleWordAndStrippingMatchTokenizers) {
  json j = json::parse(io::read_text_file(kFixtures + "/added/tokenizer.json"));
  for (auto& a : j["added_tokens"])
    if (a["content"] == "[NEW]") a["single_word"] = true;
  const uint32_t next = static_cast<uint32_t>(j["model"]["vocab"].size());  // the added tokens are in the vocabulary
  j["added_tokens"].push_back({{"id", next}, {"content", "[NEW]x"}, {"single_word", true}, {"lstrip", false},
                               {"rstrip", false}, {"normalized", false}, {"special", false}});
  const std::string scratch = test::scratch_dir(), dir = scratch + "/single-word";
  fs::create_directories(dir);
  io::write_file_atomic(dir + "/tokenizer.json", j.dump());
  expect_matches_tokenizers("single-word", {"a [NEW] b", "a[NEW] b", "\xc3\xa9[NEW]", "\xe2\x80\x94[NEW]\xe2\x80\x94", "[NEW]x y",
                                            "[NEW]xy [NEW]", "\xe4\xb8\xad[NEW]", "x\xe2\x80\x83\xe2\x80\x83<mask> z",
                                            "a <mask>\xc2\xa0" "b", "[NEW]\xe3\x80\x80\xe3\x80\x80" "c", "_[NEW]", "1[NEW]"},
                            dir, scratch);
}

TEST(Tokenizer, AMergeListedTwiceTakesItsLastRank) {  // as tokenizers' HashMap of merges does
  const BytePairEncoder bpe({{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}}, {{"a", "b"}, {"b", "c"}, {"a", "b"}},
                            [](size_t i) { return std::to_string(i); });
  std::vector<uint32_t> ids;
  bpe.encode("abc", ids);
  EXPECT_EQ(ids, (std::vector<uint32_t>{0, 4}));  // a, bc: (a, b) ranks third
}

TEST(Tokenizer, TokenEndsSpellTheText) {
  std::vector<std::string> texts = expected()["corpus"].get<std::vector<std::string>>();
  texts.insert(texts.end(), kSentencePieceTexts.begin(), kSentencePieceTexts.end());
  texts.push_back("a  <mask> b [NEW]   c <|endoftext|>d");  // lstrip and rstrip of the "added" fixture
  for (const char* variant : {"llama2", "mistral", "metaspace-split", "gemma", "llama3", "opt", "added"}) {
    const Tokenizer tok = Tokenizer::load(kFixtures + "/" + variant);
    for (const std::string& text : texts) {
      const auto ids = tok.encode(text, false);
      const std::vector<size_t> ends = tok.token_ends(text, ids);
      ASSERT_EQ(ends.size(), ids.size());
      EXPECT_EQ(ids.empty() ? 0 : ends.back(), text.size()) << variant << ": " << text;
      // Every id's bytes are what it decodes to, up to the prefix space (byte fallback inside a
      // character aside: only the run decodes).
      for (size_t i = 0, at = 0; i < ids.size(); at = ends[i++]) {
        std::string piece = text.substr(at, ends[i] - at);
        for (size_t u = piece.find("\xe2\x96\x81"); u != std::string::npos; u = piece.find("\xe2\x96\x81"))
          piece.replace(u, 3, " ");  // a "▁" written in the text decodes as a space
        const std::string decoded = tok.decode({ids[i]});
        if (decoded.find("\xef\xbf\xbd") != std::string::npos || decoded.rfind("<0x", 0) == 0) continue;
        const size_t b = piece.find_first_not_of(" \t\r\n"), e = piece.find_last_not_of(" \t\r\n");
        const std::string trimmed = b == std::string::npos ? "" : piece.substr(b, e - b + 1);  // lstrip / rstrip took it in
        EXPECT_TRUE(decoded == piece || " " + decoded == piece || decoded == " " + piece || decoded == trimmed)
            << variant << ": token " << i << " of '" << text << "' decodes to '" << decoded << "', spans '" << piece << "'";
      }
    }
  }
  const Tokenizer tok = Tokenizer::load(kFixtures + "/llama2");
  const std::string chat = "<s>[INST] hi [/INST] ok</s>";
  const auto ids = tok.encode(chat, false);
  const std::vector<size_t> ends = tok.token_ends(chat, ids);
  EXPECT_EQ(ends[0], 3u);                            // <s>
  EXPECT_EQ(ends[ends.size() - 2], chat.size() - 4);  // "ok" ends where </s> begins
  const std::string why = test::error_of([&] { tok.token_ends(chat + "x", ids); });
  EXPECT_NE(why.find("the tokens do not spell the text (28 bytes, the tokens end at 27)"), std::string::npos) << why;
}

}  // namespace
}  // namespace lofi::data
