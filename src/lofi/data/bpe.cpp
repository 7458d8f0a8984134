// BPE: GPT-2's byte table or characters with byte fallback, rank-ordered merging with a heap (so
// long pieces such as whitespace runs, or a SentencePiece tokenizer's whole unsplit text, stay
// O(n log n)), and a striped cache of whole pieces shared by threads.
#include "lofi/data/bpe.h"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <queue>

#include "lofi/error.h"

namespace lofi::data {
namespace {

struct ByteTable {
  std::array<std::string, 256> to_text;        // byte -> UTF-8 of its stand-in character
  std::unordered_map<uint32_t, uint8_t> to_byte;  // stand-in code point -> byte
  ByteTable() {
    // Printable Latin-1 bytes stand for themselves; the rest take code points from U+0100 upwards.
    std::array<uint32_t, 256> cp{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      cp[b] = printable ? b : next++;
    }
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t c = cp[b];
      std::string s = c < 0x80 ? std::string(1, static_cast<char>(c))
                                : std::string{static_cast<char>(0xC0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3F))};
      to_text[b] = s;
      to_byte[c] = static_cast<uint8_t>(b);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable table;
  return table;
}

// Length of the UTF-8 sequence that LEAD starts (1 for stray continuation bytes).
size_t utf8_length(unsigned char lead) {
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

}  // namespace

std::string byte_level_encode(std::string_view bytes) {
  const auto& table = byte_table();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += table.to_text[b];
  return out;
}

std::string byte_level_decode(std::string_view text) {
  const auto& table = byte_table();
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    auto lead = static_cast<unsigned char>(text[i]);
    size_t n = std::min(utf8_length(lead), text.size() - i);
    uint32_t cp = n == 1 ? lead : lead & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    auto it = n <= 2 ? table.to_byte.find(cp) : table.to_byte.end();
    if (it != table.to_byte.end()) out += static_cast<char>(it->second);
    else out.append(text.substr(i, n));
    i += n;
  }
  return out;
}

// Whole pieces -> ids. Striped so that threads rarely wait on each other; each stripe is emptied
// when full, which bounds memory on corpora with endless distinct words.
struct BytePairEncoder::Cache {
  static constexpr size_t kStripes = 64, kPerStripe = 8192, kMaxPieceBytes = 64;
  struct Stripe {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<uint32_t>> map;
  };
  std::array<Stripe, kStripes> stripes;
};

BytePairEncoder::BytePairEncoder(std::unordered_map<std::string, uint32_t> vocab, const std::vector<BpeMerge>& merges,
                                 const std::function<std::string(size_t)>& where, std::optional<uint32_t> unk,
                                 bool ignore_merges, bool characters, bool byte_fallback, bool fuse_unk)
    : vocab_(std::move(vocab)),
      unk_(unk),
      ignore_merges_(ignore_merges),
      characters_(characters),
      fuse_unk_(fuse_unk),
      cache_(std::make_unique<Cache>()) {
  for (const auto& [text, id] : vocab_) symbols_[id] = &text;
  const auto& table = byte_table();
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(table.to_text[b]);
    byte_ids_[b] = it == vocab_.end() ? -1 : static_cast<int64_t>(it->second);
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);  // tokenizers' spelling: upper-case hex
    it = characters_ && byte_fallback ? vocab_.find(name) : vocab_.end();
    fallback_ids_[b] = it == vocab_.end() ? -1 : static_cast<int64_t>(it->second);
    if (it != vocab_.end()) fallback_bytes_[it->second] = static_cast<uint8_t>(b);
    if (b < 128) {
      it = characters_ ? vocab_.find(std::string(1, static_cast<char>(b))) : vocab_.end();
      ascii_ids_[b] = it == vocab_.end() ? -1 : static_cast<int64_t>(it->second);
    }
  }
  auto id_of = [&](const std::string& s, size_t i) {
    auto it = vocab_.find(s);
    if (it == vocab_.end()) fail(where(i), ": merge '", merges[i].left, " ", merges[i].right, "' needs '", s, "', which is not in the vocabulary");
    return it->second;
  };
  merges_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    uint64_t key = (static_cast<uint64_t>(id_of(merges[i].left, i)) << 32) | id_of(merges[i].right, i);
    // The last (highest-ranked) occurrence of a pair wins, as in Hugging Face's loader (a HashMap
    // collected in file order).
    merges_.insert_or_assign(key, std::make_pair(static_cast<uint32_t>(i), id_of(merges[i].left + merges[i].right, i)));
  }
}

BytePairEncoder::~BytePairEncoder() = default;

const std::string* BytePairEncoder::symbol(uint32_t id) const {
  auto it = symbols_.find(id);
  return it == symbols_.end() ? nullptr : it->second;
}

int BytePairEncoder::fallback_byte(uint32_t id) const {
  auto it = fallback_bytes_.find(id);
  return it == fallback_bytes_.end() ? -1 : it->second;
}

void BytePairEncoder::encode(std::string_view piece, std::vector<uint32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(characters_ ? std::string(piece) : byte_level_encode(piece));
    if (it != vocab_.end()) return out.push_back(it->second);
  }
  if (piece.size() > Cache::kMaxPieceBytes) return merge(piece, out);
  auto& stripe = cache_->stripes[std::hash<std::string_view>{}(piece) % Cache::kStripes];
  std::string key(piece);
  {
    std::lock_guard<std::mutex> lock(stripe.mutex);
    auto it = stripe.map.find(key);
    if (it != stripe.map.end()) return out.insert(out.end(), it->second.begin(), it->second.end()), void();
  }
  size_t first = out.size();
  merge(piece, out);
  std::vector<uint32_t> ids(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
  std::lock_guard<std::mutex> lock(stripe.mutex);
  if (stripe.map.size() >= Cache::kPerStripe) stripe.map.clear();
  stripe.map.emplace(std::move(key), std::move(ids));
}

void BytePairEncoder::initial_symbols(std::string_view piece, std::vector<uint32_t>& ids) const {
  if (!characters_) {
    for (unsigned char b : piece) {
      int64_t id = byte_ids_[b];
      if (id < 0) {
        if (!unk_) continue;  // a byte the vocabulary cannot spell: dropped, or unk in its place
        id = *unk_;
      }
      ids.push_back(static_cast<uint32_t>(id));
    }
    return;
  }
  // As tokenizers' BPE::merge_word: a character in the vocabulary is its own symbol; else its bytes'
  // <0xXX> tokens when the vocabulary has all of them; else unk. With fuse_unk a run of unknown
  // characters is one unk, which only a character of the vocabulary ends (byte tokens go before it,
  // as there).
  bool unk_pending = false;
  std::string character;
  for (size_t i = 0; i < piece.size();) {
    const auto lead = static_cast<unsigned char>(piece[i]);
    if (lead < 128 && ascii_ids_[lead] >= 0) {  // most text: no string to build and hash
      if (unk_pending) ids.push_back(*unk_), unk_pending = false;
      ids.push_back(static_cast<uint32_t>(ascii_ids_[lead]));
      ++i;
      continue;
    }
    const size_t n = std::min(utf8_length(lead), piece.size() - i);  // valid UTF-8 (tokenizer.h)
    character.assign(piece.substr(i, n));
    i += n;
    if (auto it = vocab_.find(character); it != vocab_.end()) {
      if (unk_pending) ids.push_back(*unk_), unk_pending = false;
      ids.push_back(it->second);
      continue;
    }
    if (std::all_of(character.begin(), character.end(), [&](char c) { return fallback_ids_[static_cast<unsigned char>(c)] >= 0; })) {
      for (char c : character) ids.push_back(static_cast<uint32_t>(fallback_ids_[static_cast<unsigned char>(c)]));
      continue;
    }
    if (!unk_) continue;  // dropped, as without an unk token there
    if (unk_pending && !fuse_unk_) ids.push_back(*unk_);
    unk_pending = true;
  }
  if (unk_pending) ids.push_back(*unk_);
}

void BytePairEncoder::merge(std::string_view piece, std::vector<uint32_t>& out) const {
  // Symbols as a doubly linked list over an array; merged-away symbols get dead = true.
  struct Symbol {
    uint32_t id;
    int prev, next;
    bool dead;
  };
  thread_local std::vector<uint32_t> ids;
  ids.clear();
  initial_symbols(piece, ids);
  std::vector<Symbol> syms;
  syms.reserve(ids.size());
  for (uint32_t id : ids) {
    int n = static_cast<int>(syms.size());
    syms.push_back({id, n - 1, n + 1, false});
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  // Candidate merges ordered by (rank, position): the lowest rank first, leftmost among equals.
  struct Candidate {
    uint32_t rank;
    int pos;
    uint32_t id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int pos) {
    int next = syms[pos].next;
    if (next < 0) return;
    auto it = merges_.find((static_cast<uint64_t>(syms[pos].id) << 32) | syms[next].id);
    if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) consider(i);
  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    Symbol& left = syms[c.pos];
    if (left.dead || left.next < 0) continue;
    // Stale entries (one side merged since) no longer name the same pair.
    auto it = merges_.find((static_cast<uint64_t>(left.id) << 32) | syms[left.next].id);
    if (it == merges_.end() || it->second.second != c.id) continue;
    Symbol& right = syms[left.next];
    left.id = c.id;
    right.dead = true;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = c.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  for (int i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace lofi::data
