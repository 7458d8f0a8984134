// Hugging Face tokenizer.json decoders: tokens back to text. ByteLevel (GPT-2's byte table: GPT-2,
// OPT, Llama 3, Qwen2); and what SentencePiece conversions write (Llama 2, Mistral): a Sequence of
// Replace("▁", " "), ByteFallback (runs of <0xXX> tokens back to their bytes), Fuse and Strip, or
// Metaspace. Each step as tokenizers' decode_chain does it, on the list of token strings.
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace lofi::data {

class TokenDecoder {
 public:
  TokenDecoder();  // ByteLevel
  // tokenizer.json's "decoder" (null: ByteLevel); WHERE names it in errors, which list what is read.
  static TokenDecoder from_json(const nlohmann::json& j, const std::string& where);

  // TOKENS (as the vocabulary spells them; added tokens' content) as text. ByteLevel leaves the
  // bytes of a character that the ids cut short as they are (Hugging Face writes U+FFFD there);
  // ByteFallback writes U+FFFD for each byte of a run that is not UTF-8, as Hugging Face does.
  std::string decode(std::vector<std::string> tokens) const;
  bool byte_level() const;  // a ByteLevel decoder alone

 private:
  struct Step {
    enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
    std::string from, to;    // kReplace: FROM -> TO; kStrip: FROM is the character; kMetaspace: FROM is the replacement
    int start = 0, stop = 0;  // kStrip: how many of it at most at each end; kMetaspace: start 1 strips the first token's
  };
  static void add(TokenDecoder& d, const nlohmann::json& j, const std::string& where);
  std::vector<Step> steps_;
};

}  // namespace lofi::data
