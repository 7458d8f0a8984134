#include "lofi/data/token_decoder.h"

#include <nlohmann/json.hpp>

#include "lofi/data/bpe.h"
#include "lofi/data/normalize.h"
#include "lofi/error.h"

namespace lofi::data {
namespace {

// The byte a token spelled <0xXX> (upper- or lower-case hex, as Rust's from_str_radix reads) stands for, or -1.
int fallback_byte(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int value = 0;
  for (char c : t.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

}  // namespace

TokenDecoder::TokenDecoder() { steps_.push_back({Step::kByteLevel, "", ""}); }

void TokenDecoder::add(TokenDecoder& d, const nlohmann::json& j, const std::string& where) {
  const std::string kind = j.is_object() ? j.value("type", "?") : "?";
  auto string_of = [&](const char* key) {
    if (!j.contains(key) || !j[key].is_string()) fail(where, ": decoder ", kind, ": expected a string '", key, "'");
    return j[key].get<std::string>();
  };
  if (kind == "Sequence") {
    for (const auto& step : j.value("decoders", nlohmann::json::array())) add(d, step, where);
  } else if (kind == "ByteLevel") {
    d.steps_.push_back({Step::kByteLevel, "", ""});
  } else if (kind == "ByteFallback") {
    d.steps_.push_back({Step::kByteFallback, "", ""});
  } else if (kind == "Fuse") {
    d.steps_.push_back({Step::kFuse, "", ""});
  } else if (kind == "Replace" && j.contains("pattern") && j["pattern"].is_object() && j["pattern"].contains("String")) {
    const std::string from = j["pattern"]["String"].is_string() ? j["pattern"]["String"].get<std::string>() : "";
    if (from.empty()) fail(where, ": decoder Replace: expected a non-empty pattern.String");
    d.steps_.push_back({Step::kReplace, from, string_of("content")});
  } else if (kind == "Strip") {
    const std::string c = string_of("content");
    if (invalid_utf8_at(c) != std::string::npos || c.empty()) fail(where, ": decoder Strip: expected one character as 'content'");
    d.steps_.push_back({Step::kStrip, c, "", j.value("start", 0), j.value("stop", 0)});
  } else if (kind == "Metaspace") {
    const std::string scheme = j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
    d.steps_.push_back({Step::kMetaspace, string_of("replacement"), "", scheme != "never" ? 1 : 0, 0});
  } else {
    fail(where, ": decoder ", kind == "Replace" ? "Replace of a regex" : kind,
         " is not supported (lofi reads ByteLevel, and Replace of a string, ByteFallback, Fuse, Strip and Metaspace)");
  }
}

TokenDecoder TokenDecoder::from_json(const nlohmann::json& j, const std::string& where) {
  TokenDecoder d;
  if (j.is_null()) return d;
  d.steps_.clear();
  add(d, j, where);
  return d;
}

bool TokenDecoder::byte_level() const { return steps_.size() == 1 && steps_[0].kind == Step::kByteLevel; }

std::string TokenDecoder::decode(std::vector<std::string> tokens) const {
  for (const Step& s : steps_) {
    switch (s.kind) {
      case Step::kByteLevel: {  // the whole text at once, so a character's bytes may span tokens
        std::string all;
        for (const auto& t : tokens) all += t;
        tokens = {byte_level_decode(all)};
        break;
      }
      case Step::kReplace:
        for (auto& t : tokens) t = replace_all(t, s.from, s.to);
        break;
      case Step::kByteFallback: {
        std::vector<std::string> out;
        std::string run;  // the bytes of consecutive <0xXX> tokens
        auto flush = [&] {
          if (run.empty()) return;
          if (invalid_utf8_at(run) == std::string::npos) out.push_back(run);
          else out.insert(out.end(), run.size(), "\xef\xbf\xbd");  // U+FFFD for each byte
          run.clear();
        };
        for (auto& t : tokens) {
          if (const int b = fallback_byte(t); b >= 0) {
            run.push_back(static_cast<char>(b));
            continue;
          }
          flush();
          out.push_back(std::move(t));
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case Step::kFuse: {
        std::string all;
        for (const auto& t : tokens) all += t;
        tokens = {all};
        break;
      }
      case Step::kStrip:
        for (auto& t : tokens) {
          size_t begin = 0, end = t.size();
          for (int i = 0; i < s.start && t.compare(begin, s.from.size(), s.from) == 0 && begin < end; ++i) begin += s.from.size();
          for (int i = 0; i < s.stop && end >= begin + s.from.size() && t.compare(end - s.from.size(), s.from.size(), s.from) == 0; ++i)
            end -= s.from.size();
          t = t.substr(begin, end - begin);
        }
        break;
      case Step::kMetaspace:  // every replacement a space, but in the first token (when prepending) dropped
        for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = replace_all(tokens[i], s.from, i == 0 && s.start ? "" : " ");
        break;
    }
  }
  std::string text;
  for (const auto& t : tokens) text += t;
  return text;
}

}  // namespace lofi::data
