// Byte-level BPE as GPT-2 defines it: a piece's UTF-8 bytes become GPT-2's printable stand-in
// characters, then adjacent symbols merge by rank until no ranked pair is left. Splitting text into
// pieces is pretokenize.h's job; added tokens and files are tokenizer.h's.
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
  std::string left, right;  // byte-level symbols, e.g. "Ġ" and "t"
};

class BytePairEncoder {
 public:
  // VOCAB maps byte-level symbols to ids; MERGES are in rank order. WHERE(i) names merge i in errors
  // (e.g. "merges.txt:12"); a merge naming a symbol, or making one, that VOCAB lacks is an error.
  // UNK (if any) stands for bytes whose symbol VOCAB lacks; without it they are dropped, as Hugging
  // Face does. IGNORE_MERGES: a piece that is a whole vocabulary entry is taken as it is (Llama 3).
  BytePairEncoder(std::unordered_map<std::string, uint32_t> vocab, const std::vector<BpeMerge>& merges,
                  const std::function<std::string(size_t)>& where, std::optional<uint32_t> unk = std::nullopt,
                  bool ignore_merges = false);
  ~BytePairEncoder();

  // Appends the ids of PIECE (raw UTF-8 bytes, one pre-token) to OUT. Thread-safe; cached.
  void encode(std::string_view piece, std::vector<uint32_t>& out) const;

  const std::unordered_map<std::string, uint32_t>& vocab() const { return vocab_; }
  // The byte-level symbol of ID, or nullptr.
  const std::string* symbol(uint32_t id) const;

 private:
  void merge(std::string_view piece, std::vector<uint32_t>& out) const;

  std::unordered_map<std::string, uint32_t> vocab_;
  std::unordered_map<uint32_t, const std::string*> symbols_;  // id -> key of vocab_
  std::unordered_map<uint64_t, std::pair<uint32_t, uint32_t>> merges_;  // (left id << 32 | right id) -> (rank, id)
  std::array<int64_t, 256> byte_ids_{};  // byte -> id of its symbol, -1 when the vocabulary lacks it
  std::optional<uint32_t> unk_;
  bool ignore_merges_ = false;
  struct Cache;
  std::unique_ptr<Cache> cache_;
};

}  // namespace lofi::data
