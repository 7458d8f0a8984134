// A BPE tokenizer read from a Hugging Face tokenizer directory: tokenizer.json with model BPE,
// either byte-level (a ByteLevel pre-tokenizer, optionally after a Split with the family's own
// regex: GPT-2, OPT, Llama 3, Qwen2) or SentencePiece's BPE as transformers converts it (symbols
// are characters with byte fallback, after a Prepend + Replace normalizer or a Metaspace
// pre-tokenizer: Llama 2, Mistral, TinyLlama); or vocab.json + merges.txt with the optional
// tokenizer_config.json / special_tokens_map.json / added_tokens.json beside them. Encodes as
// Hugging Face does: special tokens first, then the normalizer (normalize.h) on what lies between
// them, then the other added tokens, pre-tokenisation (pretokenize.h), BPE (bpe.h), and the
// post-processor's tokens (OPT's </s>, Llama 3's <|begin_of_text|>, Llama 2's <s>); decodes ids
// back to text through the file's decoder (token_decoder.h). Unigram models (T5, Gemma's
// SentencePiece files before conversion) are refused by name.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lofi/data/normalize.h"
#include "lofi/data/token_decoder.h"

namespace lofi::data {

class BytePairEncoder;
class RegexSplitter;
struct Metaspace;

struct AddedToken {
  std::string content;  // e.g. "<|endoftext|>"
  uint32_t id = 0;
  bool special = true;  // special tokens are skipped by decode(skip_special_tokens) and by encode_ordinary
  bool lstrip = false, rstrip = false;  // the match takes in (ASCII) whitespace on its left / right
  bool single_word = false;             // matches only where not inside a word
  // Matched in the normalised text, as its normalised CONTENT (Hugging Face's normalized: true,
  // its default for tokens that are not special), else in the raw text before normalisation.
  bool normalized = false;
  std::string matched;  // what is matched: CONTENT, or with NORMALIZED the normaliser's CONTENT
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
  // Where each of IDS ends in TEXT (byte offsets), IDS being encode(TEXT, false): each token matched
  // against TEXT in turn, a SentencePiece "▁" against a space or itself, and the prefix a part was
  // given ("▁", ByteLevel's prefix space) against nothing; an added token with lstrip / rstrip takes
  // in the whitespace it took in. Throws when they do not spell TEXT (a normalizer that changed
  // it: NFC composing characters, say; an unk).
  std::vector<size_t> token_ends(std::string_view text, const std::vector<uint32_t>& ids) const;
  // Whether a plain line break ends every BPE piece: a document cut just after one (where no
  // whitespace is beside it) encodes as its parts do (data preparation's long documents).
  bool line_breaks_end_pieces() const { return line_breaks_end_pieces_; }

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
  // Encodes text that holds no added tokens: pre-tokenise, then BPE each piece. AT_START: TEXT
  // begins the input; CONTINUES: it goes on from an earlier part (no prefix).
  void encode_plain(std::string_view text, std::vector<uint32_t>& out, bool at_start, bool continues) const;
  // Splits TEXT on the added tokens with NORMALIZED == NORMALIZED_PASS (special ones only WITH_SPECIAL),
  // as Hugging Face does: the raw text on those that are not normalised, then each part between
  // them normalised and split on those that are; plain parts go to encode_plain. AT_START and
  // CONTINUES: of TEXT's first part.
  void encode_added(std::string_view text, bool normalized_pass, bool with_special, std::vector<uint32_t>& out, bool at_start,
                    bool continues) const;
  // Whether encoding the part that starts TEXT puts a prefix before it (AT_START: TEXT begins the
  // input; NORMALISED_PART: a part after a normalised added token, which no Prepend reaches).
  bool prefixes(std::string_view text, bool at_start, bool normalised_part = false) const;
  const AddedToken* added_token(uint32_t id) const;  // nullptr when ID is none
  void finish(const std::string& source);  // derived tables and checks, once everything is read

  std::string source_;  // the file it came from, for messages
  std::unique_ptr<BytePairEncoder> bpe_;
  std::unique_ptr<RegexSplitter> splitter_;
  std::unique_ptr<Metaspace> metaspace_;  // a Metaspace pre-tokenizer (SentencePiece conversions)
  bool add_prefix_space_ = false;         // ByteLevel's
  Normalizer normalizer_;                 // none, NFC (Qwen2), Prepend + Replace (Llama 2)
  TokenDecoder decoder_;                  // ByteLevel unless the file names another
  std::string space_symbol_ = " ";        // what a space becomes before BPE ("▁" in SentencePiece conversions)
  bool line_breaks_end_pieces_ = true;
  std::vector<int32_t> added_index_;  // per id: its index in added_, -1 when it is none
  std::vector<AddedToken> added_;
  std::vector<uint32_t> prefix_, suffix_;
  std::string eos_token_;  // as the directory names it; empty when it does not
  std::string bos_token_;
  uint32_t vocab_size_ = 0;
  bool first_byte_[256] = {};  // bytes that start some added token: the scan skips all others
};

}  // namespace lofi::data
