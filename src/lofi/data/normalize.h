// The normalizers of Hugging Face tokenizer.json files that lofi honours: NFC (Qwen2's), by ICU,
// the library the Unicode Consortium's own implementation lives in; and SentencePiece conversions'
// Prepend("▁") and Replace(" ", "▁") (Llama 2's, Mistral v0.1's), in a Sequence or alone.
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace lofi::data {

// TEXT (UTF-8) in Normalization Form C. Ill-formed UTF-8 is left for the pre-tokenizer to refuse.
std::string nfc(std::string_view text);

// The offset of the first byte of TEXT that is not well-formed UTF-8, or npos.
size_t invalid_utf8_at(std::string_view text);

// TEXT with every FROM (not empty) replaced by TO, left to right (Replace normalizers and decoders).
std::string replace_all(std::string_view text, std::string_view from, std::string_view to);

class Normalizer {
 public:
  Normalizer() = default;  // none
  // tokenizer.json's "normalizer" (null: none); WHERE names it in errors, which list what is read.
  static Normalizer from_json(const nlohmann::json& j, const std::string& where);

  bool empty() const { return steps_.empty(); }
  bool prepends() const;  // whether it has a Prepend step
  // What a space becomes: the content of a Replace of " " ("▁" in SentencePiece conversions), else " ".
  std::string space_replacement() const;
  // Whether no normalised text holds S: a Replace step takes every S away and no later step writes
  // one (NFC cannot make one of a space, the only S asked about).
  bool removes(std::string_view s) const;
  // TEXT normalised, one step after another. PREPEND false leaves out Prepend steps (a text that
  // goes on from an earlier part). Hugging Face prepends to any non-empty text, as here.
  std::string apply(std::string_view text, bool prepend = true) const;

 private:
  struct Step {
    enum Kind { kNfc, kPrepend, kReplace } kind;
    std::string from, to;  // kPrepend: TO; kReplace: FROM -> TO
  };
  std::vector<Step> steps_;
};

}  // namespace lofi::data
