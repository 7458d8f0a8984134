// A byte-level BPE tokenizer read from a Hugging Face tokenizer directory: tokenizer.json (model
// BPE, ByteLevel pre-tokenizer, optionally after a Split with the family's own regex: GPT-2, OPT,
// Llama 3, Qwen2), or vocab.json + merges.txt with the optional tokenizer_config.json /
// special_tokens_map.json / added_tokens.json beside them. Encodes as Hugging Face does: special
// tokens first, then the normalizer (none, or NFC as Qwen2's) on what lies between them, then the
// other added tokens, pre-tokenisation (pretokenize.h), BPE (bpe.h), and the post-processor's
// tokens (OPT's </s>, Llama 3's <|begin_of_text|>); decodes ids back to text. SentencePiece-style
// tokenizers (Unigram, or BPE with byte_fallback: Llama 2, Mistral v0.1) are refused by name.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lofi::data {

class BytePairEncoder;
class RegexSplitter;

struct AddedToken {
  std::string content;  // e.g. "<|endoftext|>"
  uint32_t id = 0;
  bool special = true;  // special tokens are skipped by decode(skip_special_tokens) and by encode_ordinary
  bool lstrip = false, rstrip = false;  // the match takes in (ASCII) whitespace on its left / right
  bool single_word = false;             // matches only where not inside a word
};

class Tokenizer {
 public:
  // DIR's tokenizer.json when there is one, else its vocab.json + merges.txt. Throws naming the file.
  static Tokenizer load(const std::string& dir);
  static Tokenizer from_tokenizer_json(const std::string& dir);
  static Tokenizer from_vocab_merges(const std::string& dir);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Hugging Face's tokenizer(text)["input_ids"]: added tokens in TEXT are matched, and with
  // ADD_SPECIAL_TOKENS the post-processor's tokens are added (OPT: "</s>" first).
  std::vector<uint32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Text as text: special tokens written in TEXT are encoded like any other characters and nothing
  // is added (tiktoken's encode_ordinary; what data preparation wants). Appends to OUT. CONTINUES:
  // TEXT goes on from an earlier part of the same document (no prefix space is added).
  void encode_ordinary(std::string_view text, std::vector<uint32_t>& out, bool continues = false) const;
  // Ids back to text; unknown ids are an error. Ids that end inside a UTF-8 character leave its
  // bytes as they are (Hugging Face writes U+FFFD there).
  std::string decode(const std::vector<uint32_t>& ids, bool skip_special_tokens = false) const;

  uint32_t vocab_size() const { return vocab_size_; }  // largest id + 1
  std::optional<uint32_t> token_id(const std::string& token) const;
  // The token that ends a document: eos_token where the directory names one, else <|endoftext|>,
  // else </s>. Throws when the vocabulary has none of them.
  uint32_t end_of_text() const;
  // The bos_token the directory names, when it names one that is in the vocabulary.
  std::optional<uint32_t> beginning_of_text() const;
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  const std::vector<uint32_t>& prefix() const { return prefix_; }  // ids the post-processor puts first
  const std::vector<uint32_t>& suffix() const { return suffix_; }  // and last

 private:
  Tokenizer();
  // Encodes text that holds no added tokens: pre-tokenise, then BPE each piece.
  void encode_plain(std::string_view text, std::vector<uint32_t>& out, bool continues = false) const;
  // Splits TEXT on the added tokens with SPECIAL == SPECIAL_PASS; plain parts go to encode_plain,
  // or, on the special pass, through the non-special pass first.
  void encode_added(std::string_view text, bool special_pass, std::vector<uint32_t>& out, bool continues = false) const;
  void finish(const std::string& source);  // derived tables and checks, once everything is read

  std::string source_;  // the file it came from, for messages
  std::unique_ptr<BytePairEncoder> bpe_;
  std::unique_ptr<RegexSplitter> splitter_;
  bool add_prefix_space_ = false;
  bool nfc_ = false;  // normalizer NFC (Qwen2)
  std::vector<AddedToken> added_;
  std::vector<uint32_t> prefix_, suffix_;
  std::string eos_token_;  // as the directory names it; empty when it does not
  std::string bos_token_;
  uint32_t vocab_size_ = 0;
  bool first_byte_[256] = {};  // bytes that start some added token: the scan skips all others
};

}  // namespace lofi::data
