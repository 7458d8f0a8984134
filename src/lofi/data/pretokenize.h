// Pre-tokenisation: cuts text into the pieces that BPE encodes one at a time, with a regex (GPT-2's
// pattern unless a tokenizer names another) run by PCRE2 in UTF + Unicode-property mode, JIT-compiled
// where the platform allows; or, for SentencePiece conversions, Hugging Face's Metaspace. What
// merges inside a piece is bpe.h's business.
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace lofi::data {

// GPT-2's pre-tokenisation pattern, as Hugging Face's ByteLevel pre-tokenizer uses it.
extern const char* const kGpt2Pattern;

class RegexSplitter {
 public:
  explicit RegexSplitter(const std::string& pattern);  // throws on a pattern PCRE2 rejects
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends TEXT's pieces to OUT in order: the matches, and any text between them as pieces of its
  // own (Hugging Face's Split with behavior Isolated), so the pieces always cover TEXT. Throws on
  // invalid UTF-8, naming the byte offset. Safe to call from many threads at once.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*; kept out of the header so users need not see pcre2.h
};

// Hugging Face's Metaspace pre-tokenizer (Mistral v0.3 and later SentencePiece conversions):
// spaces become REPLACEMENT ("▁"), which the scheme puts before a text that does not start with it
// (always; first: only the text that begins the input; never); with SPLIT, pieces start at each
// replacement (MergedWithNext), else the text is one piece.
struct Metaspace {
  enum class Scheme { kAlways, kFirst, kNever };
  std::string replacement = "\xe2\x96\x81";
  Scheme scheme = Scheme::kAlways;
  bool split = true;

  static Metaspace from_json(const nlohmann::json& j, const std::string& where);
  // Whether TEXT gets the replacement put first: AT_START, it begins the input.
  bool prefixes(std::string_view text, bool at_start) const;
  // TEXT as the pre-tokenizer leaves it, into OUT (PREFIX: as prefixes() says, or false for a text
  // that goes on from an earlier part), and its pieces, views into OUT, appended to PIECES.
  void apply(std::string_view text, bool prefix, std::string& out, std::vector<std::string_view>& pieces) const;
};

}  // namespace lofi::data
