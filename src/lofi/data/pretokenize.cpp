// PCRE2 drives the GPT-2 pattern: it has \p{L} / \p{N} classes, lookahead and a JIT, which
// std::regex lacks (no Unicode properties) and which would otherwise have to be written by hand.
#include "lofi/data/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "lofi/error.h"

namespace lofi::data {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

// Match data and a JIT stack per thread: pcre2_match needs its own of each, and allocating them per
// call would cost more than matching a short piece. The stack grows to 8 MB for pathological inputs
// (e.g. megabytes of one character class) instead of failing at PCRE2's 32 KB default.
struct ThreadMatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  ThreadMatchState() {
    if (stack) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~ThreadMatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

}  // namespace

RegexSplitter::RegexSplitter(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE at = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                   &err, &at, nullptr);
  if (!code) fail("pre-tokenizer pattern '", pattern, "' at offset ", at, ": ", pcre2_message(err));
  // Without JIT (an unsupported CPU) pcre2_match interprets the pattern: slower, same pieces.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

RegexSplitter::~RegexSplitter() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void RegexSplitter::split(std::string_view text, std::vector<std::string_view>& out) const {
  thread_local ThreadMatchState state;
  auto* code = static_cast<pcre2_code*>(code_);
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0, emitted = 0;
  // PCRE2 checks the whole subject for valid UTF-8 on every call unless told not to: check once.
  uint32_t options = 0;
  while (pos < text.size()) {
    int rc = pcre2_match(code, subject, text.size(), pos, options, state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21)
        fail("text is not valid UTF-8 at byte ", pcre2_get_startchar(state.data), ": ", pcre2_message(rc));
      fail("pre-tokenizer failed at byte ", pos, ": ", pcre2_message(rc));
    }
    options = PCRE2_NO_UTF_CHECK;
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(state.data);
    size_t start = ov[0], end = ov[1];
    if (start > emitted) out.push_back(text.substr(emitted, start - emitted));
    if (end > start) {
      out.push_back(text.substr(start, end - start));
      emitted = pos = end;
    } else {
      // An empty match: step over one UTF-8 character so the scan moves on.
      pos = start + 1;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      emitted = start;
    }
  }
  if (emitted < text.size()) out.push_back(text.substr(emitted));
}

Metaspace Metaspace::from_json(const nlohmann::json& j, const std::string& where) {
  Metaspace m;
  if (!j.contains("replacement") || !j["replacement"].is_string() || j["replacement"].get<std::string>().empty())
    fail(where, ": pre_tokenizer Metaspace: expected a string 'replacement'");
  m.replacement = j["replacement"].get<std::string>();
  const std::string scheme = j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
  if (scheme == "always") m.scheme = Scheme::kAlways;
  else if (scheme == "first") m.scheme = Scheme::kFirst;
  else if (scheme == "never") m.scheme = Scheme::kNever;
  else fail(where, ": pre_tokenizer Metaspace: prepend_scheme '", scheme, "' is not one of always, first, never");
  m.split = j.value("split", true);
  return m;
}

bool Metaspace::prefixes(std::string_view text, bool at_start) const {
  if (scheme == Scheme::kNever || (scheme == Scheme::kFirst && !at_start)) return false;
  return !(text.substr(0, 1) == " " || text.substr(0, replacement.size()) == replacement);
}

void Metaspace::apply(std::string_view text, bool prefix, std::string& out, std::vector<std::string_view>& pieces) const {
  out.clear();
  if (prefix) out = replacement;
  for (char c : text) {
    if (c == ' ') out.append(replacement);
    else out.push_back(c);
  }
  if (!split) return pieces.push_back(out), void();
  size_t start = 0;
  for (size_t at = out.find(replacement, 1); at != std::string::npos; at = out.find(replacement, at + 1)) {
    pieces.push_back(std::string_view(out).substr(start, at - start));
    start = at;
  }
  if (start < out.size()) pieces.push_back(std::string_view(out).substr(start));
}

}  // namespace lofi::data
