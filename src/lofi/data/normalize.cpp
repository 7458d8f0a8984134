#include "lofi/data/normalize.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/utf8.h>
#include <unicode/utypes.h>

#include <nlohmann/json.hpp>

#include "lofi/error.h"

namespace lofi::data {

std::string nfc(std::string_view text) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = icu::Normalizer2::getNFCInstance(err);
  if (U_FAILURE(err)) fail("tokenizer: ICU's NFC normaliser is unavailable: ", u_errorName(err));
  const icu::StringPiece in(text.data(), static_cast<int32_t>(text.size()));
  if (normalizer->isNormalizedUTF8(in, err) && U_SUCCESS(err)) return std::string(text);  // the common case
  err = U_ZERO_ERROR;
  std::string out;
  icu::StringByteSink<std::string> sink(&out, static_cast<int32_t>(text.size()));
  normalizer->normalizeUTF8(0, in, sink, nullptr, err);
  if (U_FAILURE(err)) fail("tokenizer: NFC normalisation failed: ", u_errorName(err));
  return out;
}

size_t invalid_utf8_at(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const int64_t n = static_cast<int64_t>(text.size());
  for (int64_t i = 0; i < n;) {
    const int64_t at = i;
    UChar32 c;
    U8_NEXT(s, i, n, c);  // ICU's decoder: negative for an ill-formed sequence
    if (c < 0) return static_cast<size_t>(at);
  }
  return std::string_view::npos;
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t done = 0;
  for (size_t at = text.find(from); at != std::string_view::npos; at = text.find(from, done)) {
    out.append(text.substr(done, at - done)).append(to);
    done = at + from.size();
  }
  return out.append(text.substr(done));
}

Normalizer Normalizer::from_json(const nlohmann::json& j, const std::string& where) {
  Normalizer n;
  if (j.is_null()) return n;
  const std::string kind = j.is_object() ? j.value("type", "?") : "?";
  auto unsupported = [&](const std::string& what) {
    fail(where, ": normalizer ", what, " is not supported (lofi honours NFC, as Qwen2's tokenizers use, and ",
         "SentencePiece conversions' Prepend and Replace of a string, as Llama 2's and Mistral's; or none)");
  };
  if (kind == "Sequence") {
    for (const auto& step : j.value("normalizers", nlohmann::json::array())) {
      const Normalizer inner = from_json(step, where);
      n.steps_.insert(n.steps_.end(), inner.steps_.begin(), inner.steps_.end());
    }
  } else if (kind == "NFC") {
    n.steps_.push_back({Step::kNfc, "", ""});
  } else if (kind == "Prepend" && j.contains("prepend") && j["prepend"].is_string()) {
    n.steps_.push_back({Step::kPrepend, "", j["prepend"].get<std::string>()});
  } else if (kind == "Replace" && j.contains("pattern") && j["pattern"].is_object() && j["pattern"].contains("String") &&
             j["pattern"]["String"].is_string() && j.contains("content") && j["content"].is_string()) {
    const std::string from = j["pattern"]["String"].get<std::string>();
    if (from.empty()) unsupported("Replace of an empty string");
    n.steps_.push_back({Step::kReplace, from, j["content"].get<std::string>()});
  } else {
    unsupported(kind == "Replace" ? "Replace of a regex" : kind);
  }
  return n;
}

bool Normalizer::prepends() const {
  for (const Step& s : steps_)
    if (s.kind == Step::kPrepend) return true;
  return false;
}

std::string Normalizer::space_replacement() const {
  for (const Step& s : steps_)
    if (s.kind == Step::kReplace && s.from == " ") return s.to;
  return " ";
}

bool Normalizer::removes(std::string_view s) const {
  bool removed = false;
  for (const Step& step : steps_) {
    if (step.kind == Step::kReplace && step.from == s) removed = true;
    else if (step.kind != Step::kNfc && step.to.find(s) != std::string::npos) removed = false;
  }
  return removed && !s.empty() && std::string(s).find_first_not_of(' ') == std::string::npos;
}

std::string Normalizer::apply(std::string_view text, bool prepend) const {
  std::string out(text);
  for (const Step& s : steps_) {
    if (s.kind == Step::kNfc) {
      out = nfc(out);
    } else if (s.kind == Step::kPrepend) {
      if (prepend && !out.empty()) out.insert(0, s.to);
    } else {
      out = replace_all(out, s.from, s.to);
    }
  }
  return out;
}

}  // namespace lofi::data
