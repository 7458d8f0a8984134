// Pre-tokenisation: cuts text into the pieces that BPE encodes one at a time, with a regex (GPT-2's
// pattern unless a tokenizer names another) run by PCRE2 in UTF + Unicode-property mode, JIT-compiled
// where the platform allows. What merges inside a piece is bpe.h's business.
#pragma once
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

}  // namespace lofi::data
