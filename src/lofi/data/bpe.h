// BPE as Hugging Face's tokenizers runs it, in the two ways published vocabularies spell symbols:
//  - byte-level (GPT-2, OPT, Llama 3, Qwen2): a piece's UTF-8 bytes become GPT-2's printable
//    stand-in characters;
//  - by character with byte fallback (SentencePiece's BPE: Llama 2, Mistral): each character is its
//    own symbol, and one the vocabulary lacks becomes its UTF-8 bytes as the tokens <0x00>..<0xFF>;
// then adjacent symbols merge by rank until no ranked pair is left. Splitting text into pieces is
// pretokenize.h's job; added tokens, normalizers and files are tokenizer.h's.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lofi::data {

// GPT-2's byte <-> character table: bytes to the UTF-8 of their stand-in character, and back.
std::string byte_level_encode(std::string_view bytes);
// Characters outside the table (an added token's text) are kept as their own UTF-8.
std::string byte_level_decode(std::string_view text);

struct BpeMerge {
  std::string left, right;  // symbols, e.g. byte-level "Ġ" and "t", or SentencePiece's "▁" and "t"
};

class BytePairEncoder {
 public:
  // VOCAB maps symbols to ids; MERGES are in rank order. WHERE(i) names merge i in errors (e.g.
  // "merges.txt:12"); a merge naming a symbol, or making one, that VOCAB lacks is an error. UNK (if
  // any) stands for bytes (characters) whose symbol VOCAB lacks; without it they are dropped, as
  // Hugging Face does. IGNORE_MERGES: a piece that is a whole vocabulary entry is taken as it is
  // (Llama 3). CHARACTERS: symbols are characters (SentencePiece conversions), else GPT-2's byte
  // symbols. BYTE_FALLBACK (with CHARACTERS): <0xXX> tokens for the bytes of characters VOCAB
  // lacks (tokenizer.json's model.byte_fallback); a run of characters with neither is one UNK
  // (FUSE_UNK, as SentencePiece conversions set it) or one UNK each.
  BytePairEncoder(std::unordered_map<std::string, uint32_t> vocab, const std::vector<BpeMerge>& merges,
                  const std::function<std::string(size_t)>& where, std::optional<uint32_t> unk = std::nullopt,
                  bool ignore_merges = false, bool characters = false, bool byte_fallback = false, bool fuse_unk = false);
  ~BytePairEncoder();

  // Appends the ids of PIECE (raw UTF-8 bytes, one pre-token; well-formed UTF-8 with CHARACTERS)
  // to OUT. Thread-safe; cached.
  void encode(std::string_view piece, std::vector<uint32_t>& out) const;

  const std::unordered_map<std::string, uint32_t>& vocab() const { return vocab_; }
  // The symbol of ID as the vocabulary spells it, or nullptr.
  const std::string* symbol(uint32_t id) const;
  // The byte a <0xXX> token of the byte fallback stands for, or -1 (also without byte fallback).
  int fallback_byte(uint32_t id) const;
  bool characters() const { return characters_; }

 private:
  void merge(std::string_view piece, std::vector<uint32_t>& out) const;
  // The symbols PIECE starts as, before any merge: its bytes' (byte-level) or its characters'.
  void initial_symbols(std::string_view piece, std::vector<uint32_t>& ids) const;

  std::unordered_map<std::string, uint32_t> vocab_;
  std::unordered_map<uint32_t, const std::string*> symbols_;  // id -> key of vocab_
  std::unordered_map<uint64_t, std::pair<uint32_t, uint32_t>> merges_;  // (left id << 32 | right id) -> (rank, id)
  std::array<int64_t, 256> byte_ids_{};  // byte -> id of its symbol, -1 when the vocabulary lacks it
  std::array<int64_t, 256> fallback_ids_{};  // byte -> id of <0xXX>, -1 when absent (byte fallback)
  std::array<int64_t, 128> ascii_ids_{};     // with CHARACTERS: an ASCII character -> its id, -1 when absent
  std::unordered_map<uint32_t, uint8_t> fallback_bytes_;  // id of <0xXX> -> the byte
  std::optional<uint32_t> unk_;
  bool ignore_merges_ = false, characters_ = false, fuse_unk_ = false;
  struct Cache;
  std::unique_ptr<Cache> cache_;
};

}  // namespace lofi::data
