// Reading Hugging Face tokenizer directories and encoding as their tokenizers do. Hand-written
// because no Debian package provides Hugging Face's tokenizers for C++; the BPE paths are small,
// and tests/tokenizer_test.cpp checks them id for id against Hugging Face's own implementation.
#include "lofi/data/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include "lofi/data/bpe.h"
#include "lofi/data/normalize.h"
#include "lofi/data/pretokenize.h"
#include "lofi/error.h"
#include "lofi/io/atomic_file.h"

namespace lofi::data {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json read_json(const std::string& path) {
  std::string text = io::read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

// An optional JSON file: null when absent.
json read_json_if_present(const std::string& path) { return fs::exists(path) ? read_json(path) : json(); }

std::unordered_map<std::string, uint32_t> read_vocab(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where, ": expected an object of token -> id, found ", j.type_name());
  std::unordered_map<std::string, uint32_t> vocab;
  for (const auto& [token, id] : j.items()) {
    if (!id.is_number_unsigned() || id.get<uint64_t>() > 0xFFFFFFFEull)
      fail(where, ": token '", token, "' has id ", id.dump(), ", expected a non-negative integer below 2^32 - 1");
    vocab.emplace(token, id.get<uint32_t>());
  }
  if (vocab.empty()) fail(where, ": the vocabulary is empty");
  return vocab;
}

// "a b" -> {a, b}; WHERE names the line in errors.
BpeMerge parse_merge(const std::string& line, const std::string& where) {
  size_t space = line.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 == line.size() || line.find(' ', space + 1) != std::string::npos)
    fail(where, ": expected two tokens separated by one space, found '", line, "'");
  return {line.substr(0, space), line.substr(space + 1)};
}

// A special token as tokenizer_config.json writes it: "text" or {"content": "text", ...}.
std::string token_content(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

AddedToken added_from_json(const json& j, uint32_t id, const std::string& where) {
  if (!j.is_object() || !j.contains("content") || !j["content"].is_string())
    fail(where, ": added token ", id, ": expected an object with a string 'content'");
  AddedToken t;
  t.content = j["content"].get<std::string>();
  if (t.content.empty()) fail(where, ": added token ", id, " is empty");
  t.id = id;
  t.special = j.value("special", false);
  t.lstrip = j.value("lstrip", false);
  t.rstrip = j.value("rstrip", false);
  t.single_word = j.value("single_word", false);
  t.normalized = j.value("normalized", !t.special);  // tokenizers' AddedToken default
  return t;
}

// Unicode's White_Space (Rust's char::is_whitespace, which lstrip and rstrip use) and \w (the regex
// crate's, which single_word uses: UTS #18's word characters), by ICU.
bool is_whitespace(UChar32 c) { return c >= 0 && u_isUWhiteSpace(c); }
bool is_word(UChar32 c) {
  if (c < 0) return false;
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) return true;
  const int8_t type = u_charType(c);
  return type == U_NON_SPACING_MARK || type == U_ENCLOSING_MARK || type == U_COMBINING_SPACING_MARK ||
         type == U_DECIMAL_DIGIT_NUMBER || type == U_CONNECTOR_PUNCTUATION;
}
// The code point of TEXT that ends at AT (AT > 0) and where it starts; the one that starts at AT
// (AT < size) and where it ends. Ill-formed bytes give a negative code point.
std::pair<UChar32, size_t> code_point_before(std::string_view text, size_t at) {
  auto i = static_cast<int32_t>(at);
  UChar32 c;
  U8_PREV(reinterpret_cast<const uint8_t*>(text.data()), 0, i, c);
  return {c, static_cast<size_t>(i)};
}
std::pair<UChar32, size_t> code_point_at(std::string_view text, size_t at) {
  auto i = static_cast<int32_t>(at);
  UChar32 c;
  U8_NEXT(reinterpret_cast<const uint8_t*>(text.data()), i, static_cast<int32_t>(text.size()), c);
  return {c, static_cast<size_t>(i)};
}
// Where whitespace before AT (back to LIMIT) begins; where whitespace from AT ends.
size_t whitespace_start(std::string_view text, size_t at, size_t limit) {
  while (at > limit) {
    const auto [c, start] = code_point_before(text, at);
    if (!is_whitespace(c) || start < limit) break;
    at = start;
  }
  return at;
}
size_t whitespace_end(std::string_view text, size_t at) {
  while (at < text.size()) {
    const auto [c, end] = code_point_at(text, at);
    if (!is_whitespace(c)) break;
    at = end;
  }
  return at;
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& dir) {
  if (!fs::is_directory(dir)) fail(dir, ": not a tokenizer directory (expected tokenizer.json or vocab.json + merges.txt)");
  if (fs::exists(dir + "/tokenizer.json")) return from_tokenizer_json(dir);
  if (fs::exists(dir + "/vocab.json") || fs::exists(dir + "/merges.txt")) return from_vocab_merges(dir);
  // A SentencePiece model alone: transformers converts it on loading, each version its own way
  // (4.x: Llama 2's Prepend + Replace; 5.x: Metaspace), so lofi reads the tokenizer.json it writes.
  if (fs::exists(dir + "/tokenizer.model"))
    fail(dir, ": tokenizer.model (SentencePiece) without tokenizer.json; write the tokenizer.json that transformers makes of it ",
         "once: python3 -c \"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('", dir, "').save_pretrained('", dir,
         "')\"");
  fail(dir, ": no tokenizer.json, and no vocab.json + merges.txt");
}

Tokenizer Tokenizer::from_vocab_merges(const std::string& dir) {
  Tokenizer t;
  std::string vocab_path = dir + "/vocab.json", merges_path = dir + "/merges.txt";
  if (!fs::exists(vocab_path)) fail(vocab_path, ": missing (a GPT-2 style tokenizer needs vocab.json and merges.txt)");
  if (!fs::exists(merges_path)) fail(merges_path, ": missing (a GPT-2 style tokenizer needs vocab.json and merges.txt)");
  auto vocab = read_vocab(read_json(vocab_path), vocab_path);

  std::vector<BpeMerge> merges;
  std::vector<size_t> lines;  // merges.txt line of each merge, for messages
  std::string text = io::read_text_file(merges_path);
  size_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    merges.push_back(parse_merge(line, merges_path + ":" + std::to_string(line_no)));
    lines.push_back(line_no);
  }

  // Special and added tokens: tokenizer_config.json, then special_tokens_map.json, added_tokens.json.
  json config = read_json_if_present(dir + "/tokenizer_config.json");
  json special_map = read_json_if_present(dir + "/special_tokens_map.json");
  json added_json = read_json_if_present(dir + "/added_tokens.json");
  if (!config.is_null() && !config.is_object()) fail(dir, "/tokenizer_config.json: expected an object");
  if (!special_map.is_null() && !special_map.is_object()) fail(dir, "/special_tokens_map.json: expected an object");
  auto id_of = [&](const std::string& token, const std::string& where) -> uint32_t {
    for (const auto& a : t.added_)
      if (a.content == token) return a.id;
    auto it = vocab.find(token);
    if (it == vocab.end()) fail(where, ": '", token, "' is neither in vocab.json nor an added token");
    return it->second;
  };
  if (config.is_object() && config.contains("added_tokens_decoder")) {
    for (const auto& [key, value] : config["added_tokens_decoder"].items()) {
      uint32_t id = 0;
      try {
        id = static_cast<uint32_t>(std::stoul(key));
      } catch (const std::exception&) {
        fail(dir, "/tokenizer_config.json: added_tokens_decoder key '", key, "' is not an id");
      }
      t.added_.push_back(added_from_json(value, id, dir + "/tokenizer_config.json"));
    }
  }
  if (added_json.is_object())
    for (const auto& [token, id] : added_json.items()) {
      if (!id.is_number_unsigned()) fail(dir, "/added_tokens.json: '", token, "' has id ", id.dump(), ", expected an integer");
      if (std::none_of(t.added_.begin(), t.added_.end(), [&](const AddedToken& a) { return a.content == token; }))
        t.added_.push_back({token, id.get<uint32_t>(), false, false, false, false, /*normalized=*/true, ""});
    }
  // GPT2Tokenizer's defaults when nothing names the special tokens.
  json names = json::object();
  if (config.is_null() && special_map.is_null() && vocab.count("<|endoftext|>"))
    names = {{"bos_token", "<|endoftext|>"}, {"eos_token", "<|endoftext|>"}, {"unk_token", "<|endoftext|>"}};
  for (const json* source : {&special_map, &config})
    if (source->is_object())
      for (const auto& [key, value] : source->items())
        if ((key.size() > 6 && key.compare(key.size() - 6, 6, "_token") == 0) || key == "additional_special_tokens")
          names[key] = value;
  std::vector<std::string> specials;
  for (const auto& [key, value] : names.items()) {
    if (value.is_array()) {
      for (const auto& v : value) specials.push_back(token_content(v));
    } else if (std::string c = token_content(value); !c.empty()) {
      specials.push_back(c);
      if (key == "eos_token") t.eos_token_ = c;
      if (key == "bos_token") t.bos_token_ = c;
    }
  }
  for (const auto& s : specials) {
    if (s.empty()) continue;
    uint32_t id = id_of(s, dir + "/tokenizer_config.json");
    auto it = std::find_if(t.added_.begin(), t.added_.end(), [&](const AddedToken& a) { return a.content == s; });
    if (it == t.added_.end()) t.added_.push_back({s, id, true, false, false, false, /*normalized=*/false, ""});
    else it->special = true;
  }
  if (config.is_object()) {
    t.add_prefix_space_ = config.value("add_prefix_space", false);
    auto named = [&](const char* key) {
      std::string c = names.contains(key) ? token_content(names[key]) : "";
      if (c.empty()) fail(dir, "/tokenizer_config.json: ", key == std::string("bos_token") ? "add_bos_token" : "add_eos_token",
                          " is set but ", key, " is not");
      return id_of(c, dir + "/tokenizer_config.json");
    };
    if (config.value("add_bos_token", false)) t.prefix_.push_back(named("bos_token"));
    if (config.value("add_eos_token", false)) t.suffix_.push_back(named("eos_token"));
  }
  auto where = [&](size_t i) { return merges_path + ":" + std::to_string(lines[i]); };
  t.bpe_ = std::make_unique<BytePairEncoder>(std::move(vocab), merges, where);
  t.splitter_ = std::make_unique<RegexSplitter>(kGpt2Pattern);
  t.finish(vocab_path);
  return t;
}

Tokenizer Tokenizer::from_tokenizer_json(const std::string& dir) {
  Tokenizer t;
  std::string path = dir + "/tokenizer.json";
  json j = read_json(path);
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) fail(path, ": expected an object with a 'model'");
  const json& model = j["model"];
  std::string type = model.value("type", "BPE");
  if (type != "BPE")
    fail(path, ": model.type = \"", type, "\" is not supported: lofi reads BPE tokenizers, byte-level (GPT-2, OPT, Llama 3, ",
         "Qwen2) or SentencePiece's BPE (Llama 2, Mistral), not Unigram or WordPiece ones");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && model[key] != "")
      fail(path, ": model.", key, " = ", model[key].dump(), " is not supported (expected null or \"\")");
  if (model.contains("dropout") && !model["dropout"].is_null())
    fail(path, ": model.dropout = ", model["dropout"].dump(), " is not supported (BPE dropout samples merges; expected null)");
  if (!model.contains("vocab")) fail(path, ": model.vocab is missing");
  auto vocab = read_vocab(model["vocab"], path + ": model.vocab");
  if (!model.contains("merges") || !model["merges"].is_array()) fail(path, ": model.merges: expected an array");
  std::vector<BpeMerge> merges;
  for (size_t i = 0; i < model["merges"].size(); ++i) {
    const json& m = model["merges"][i];
    std::string where = path + ": model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) merges.push_back(parse_merge(m.get<std::string>(), where));
    else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) merges.push_back({m[0], m[1]});
    else fail(where, ": expected \"a b\" or [\"a\", \"b\"], found ", m.dump());
  }
  std::optional<uint32_t> unk;
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab.find(model["unk_token"].get<std::string>());
    if (it == vocab.end()) fail(path, ": model.unk_token '", model["unk_token"].get<std::string>(), "' is not in model.vocab");
    unk = it->second;
  }

  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    if (!j["added_tokens"].is_array()) fail(path, ": added_tokens: expected an array");
    for (const auto& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_unsigned())
        fail(path, ": added_tokens: expected objects with a non-negative integer 'id', found ", a.dump());
      t.added_.push_back(added_from_json(a, a["id"].get<uint32_t>(), path));
    }
  }
  t.normalizer_ = Normalizer::from_json(j.value("normalizer", json()), path);

  // Pre-tokenizer: ByteLevel (GPT-2's pattern unless use_regex is false), optionally after a
  // Split with its own pattern (the Llama 3 / GPT-4 layout); or, for SentencePiece's BPE, a
  // Metaspace or none (a Prepend + Replace normalizer instead).
  std::string pattern;
  bool byte_level = false;
  auto pre = [&](const json& p) {
    std::string kind = p.value("type", "");
    if (kind == "Metaspace") {
      t.metaspace_ = std::make_unique<Metaspace>(Metaspace::from_json(p, path));
    } else if (kind == "ByteLevel") {
      byte_level = true;
      t.add_prefix_space_ = p.value("add_prefix_space", false);
      if (p.value("use_regex", true)) pattern = kGpt2Pattern;
    } else if (kind == "Split" && p.contains("pattern") && p["pattern"].contains("Regex") &&
               p.value("behavior", "") == "Isolated" && !p.value("invert", false)) {
      pattern = p["pattern"]["Regex"].get<std::string>();
    } else if (kind == "Split" && p.contains("pattern") && p["pattern"].contains("String") && p["pattern"]["String"].is_string() &&
               !p.value("invert", false) && t.normalizer_.removes(p["pattern"]["String"].get<std::string>())) {
      // Gemma's Split on " " after a normalizer that has replaced every " " with "▁": nothing to cut.
    } else {
      fail(path, ": pre_tokenizer ", p.dump().substr(0, 80),
           " is not supported (expected ByteLevel, Metaspace, or a Split on spaces the normalizer has replaced)");
    }
  };
  const json& pt = j.value("pre_tokenizer", json());
  if (pt.is_object() && pt.value("type", "") == "Sequence") {
    for (const auto& p : pt["pretokenizers"]) pre(p);
  } else if (pt.is_object()) {
    pre(pt);
  }
  const bool characters = !byte_level;  // SentencePiece's BPE: characters, not GPT-2's byte symbols
  if (byte_level && t.metaspace_) fail(path, ": pre_tokenizer has both ByteLevel and Metaspace; expected one of them");
  if (characters && !t.metaspace_ && !t.normalizer_.prepends() && !model.value("byte_fallback", false))
    fail(path, ": pre_tokenizer is neither ByteLevel nor Metaspace, and the model has no byte_fallback: lofi reads byte-level ",
         "BPE (GPT-2, OPT, Llama 3, Qwen2) and SentencePiece's BPE (Llama 2, Mistral, Gemma)");
  if (t.metaspace_) t.space_symbol_ = t.metaspace_->replacement;
  else if (characters) t.space_symbol_ = t.normalizer_.space_replacement();

  // Post-processor: the ids around the sequence "A" in a single-sequence template.
  std::function<void(const json&)> post = [&](const json& p) {
    if (p.is_null()) return;
    std::string kind = p.value("type", "");
    if (kind == "ByteLevel") return;  // offsets only
    if (kind == "Sequence") {
      for (const auto& q : p["processors"]) post(q);
      return;
    }
    if (kind != "TemplateProcessing") fail(path, ": post_processor ", kind, " is not supported (expected TemplateProcessing)");
    bool after = false;
    for (const auto& piece : p.value("single", json::array())) {
      if (piece.contains("Sequence")) {
        after = true;
      } else if (piece.contains("SpecialToken")) {
        std::string name = piece["SpecialToken"].value("id", "");
        const json& st = p.value("special_tokens", json::object());
        if (!st.contains(name)) fail(path, ": post_processor names '", name, "', which its special_tokens lack");
        for (const auto& id : st[name]["ids"]) (after ? t.suffix_ : t.prefix_).push_back(id.get<uint32_t>());
      }
    }
  };
  post(j.value("post_processor", json()));
  t.decoder_ = TokenDecoder::from_json(j.value("decoder", json()), path);
  if (characters == t.decoder_.byte_level())
    fail(path, ": decoder ", j.value("decoder", json()).dump().substr(0, 80), " does not fit the model: expected ",
         characters ? "SentencePiece's (Replace, ByteFallback, Fuse, Strip; or Metaspace)" : "ByteLevel");

  json config = read_json_if_present(dir + "/tokenizer_config.json");
  if (config.is_object() && config.contains("eos_token")) t.eos_token_ = token_content(config["eos_token"]);
  if (config.is_object() && config.contains("bos_token")) t.bos_token_ = token_content(config["bos_token"]);

  auto where = [&](size_t i) { return path + ": model.merges[" + std::to_string(i) + "]"; };
  t.bpe_ = std::make_unique<BytePairEncoder>(std::move(vocab), merges, where, unk, model.value("ignore_merges", false), characters,
                                             model.value("byte_fallback", false), model.value("fuse_unk", false));
  if (!pattern.empty()) t.splitter_ = std::make_unique<RegexSplitter>(pattern);
  t.finish(path);
  return t;
}

void Tokenizer::finish(const std::string& source) {
  source_ = source;
  for (const auto& [text, id] : bpe_->vocab()) vocab_size_ = std::max(vocab_size_, id + 1);
  for (const auto& a : added_) vocab_size_ = std::max(vocab_size_, a.id + 1);
  // A normalised token is matched as the normaliser writes it (Llama 2's "</s>" with normalized:
  // true is "▁</s>" after its Prepend): Hugging Face's refresh_added_tokens.
  for (auto& a : added_) a.matched = a.normalized && !normalizer_.empty() ? normalizer_.apply(a.content) : a.content;
  // Longest first, so that the first token matching at a position is the longest one there.
  std::stable_sort(added_.begin(), added_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.matched.size() > b.matched.size(); });
  for (const auto& a : added_)
    if (!a.matched.empty()) first_byte_[static_cast<unsigned char>(a.matched[0])] = true;
  added_index_.assign(vocab_size_, -1);
  for (size_t i = 0; i < added_.size(); ++i) added_index_[added_[i].id] = static_cast<int32_t>(i);
  for (uint32_t id : prefix_) decode({id});  // fails on ids nothing defines
  for (uint32_t id : suffix_) decode({id});
  // SentencePiece's BPE runs over a whole part between added tokens: a line break ends its pieces
  // when no symbol holds one beside other characters (Llama 2's and Mistral's spell it <0x0A>).
  // Byte-level BPE: the pre-tokenizer's regex ends a piece there (prepare.cpp's safe_cut).
  if (bpe_->characters())
    for (const auto& [symbol, id] : bpe_->vocab())
      if (symbol.size() > 1 && symbol.find('\n') != std::string::npos) line_breaks_end_pieces_ = false;
}

std::optional<uint32_t> Tokenizer::token_id(const std::string& token) const {
  for (const auto& a : added_)
    if (a.content == token) return a.id;
  auto it = bpe_->vocab().find(token);
  if (it == bpe_->vocab().end()) return std::nullopt;
  return it->second;
}

std::optional<uint32_t> Tokenizer::beginning_of_text() const {
  if (bos_token_.empty()) return std::nullopt;
  return token_id(bos_token_);
}

uint32_t Tokenizer::end_of_text() const {
  if (!eos_token_.empty()) {
    if (auto id = token_id(eos_token_)) return *id;
    fail(source_, ": eos_token '", eos_token_, "' is not in the vocabulary");
  }
  for (const char* name : {"<|endoftext|>", "</s>"})
    if (auto id = token_id(name)) return *id;
  fail(source_, ": no end-of-text token (no eos_token, <|endoftext|> or </s>)");
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<uint32_t> ids;
  if (add_special_tokens) ids = prefix_;
  encode_added(text, /*normalized_pass=*/false, /*with_special=*/true, ids, /*at_start=*/true, /*continues=*/false);
  if (add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<uint32_t>& out, bool continues) const {
  encode_added(text, /*normalized_pass=*/false, /*with_special=*/false, out, /*at_start=*/true, continues);
}

void Tokenizer::encode_added(std::string_view text, bool normalized_pass, bool with_special, std::vector<uint32_t>& out,
                             bool at_start, bool continues) const {
  auto plain = [&](std::string_view part) {
    if (part.empty()) return;
    const bool first = part.data() == text.data();  // the part that starts TEXT
    if (normalized_pass) return encode_plain(part, out, at_start && first, continues && first);
    // Between raw-matched tokens: normalised (a Prepend before each such part, as Hugging Face
    // does), then the normalised tokens are matched in it.
    if (normalizer_.empty()) return encode_added(part, true, with_special, out, at_start && first, continues && first);
    const std::string normalised = normalizer_.apply(part, /*prepend=*/!(continues && first));
    encode_added(normalised, true, with_special, out, at_start && first, continues && first);
  };
  auto takes_part = [&](const AddedToken& a) { return a.normalized == normalized_pass && (with_special || !a.special); };
  if (std::none_of(added_.begin(), added_.end(), takes_part)) return plain(text);
  size_t done = 0;  // TEXT before this is handled
  for (size_t i = 0; i < text.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) continue;
    const AddedToken* hit = nullptr;
    for (const auto& a : added_) {
      if (!takes_part(a) || text.compare(i, a.matched.size(), a.matched) != 0) continue;
      hit = &a;  // the longest at the leftmost place, as Hugging Face's leftmost-longest search finds
      break;
    }
    if (!hit) continue;
    size_t start = i, end = i + hit->matched.size();
    if (hit->single_word && ((start > 0 && is_word(code_point_before(text, start).first)) ||
                             (end < text.size() && is_word(code_point_at(text, end).first)))) {
      i = end - 1;  // inside a word: not taken, and the search goes on after it, as there
      continue;
    }
    if (hit->lstrip) start = whitespace_start(text, start, done);
    if (hit->rstrip) end = whitespace_end(text, end);
    plain(text.substr(done, start - done));
    out.push_back(hit->id);
    done = end;
    i = end - 1;
  }
  plain(text.substr(done));
}

bool Tokenizer::prefixes(std::string_view text, bool at_start, bool normalised_part) const {
  if (text.empty()) return false;
  if (metaspace_) return metaspace_->prefixes(text, at_start);
  if (bpe_->characters()) return normalizer_.prepends() && !normalised_part;
  return add_prefix_space_ && text[0] != ' ';
}

void Tokenizer::encode_plain(std::string_view text, std::vector<uint32_t>& out, bool at_start, bool continues) const {
  thread_local std::vector<std::string_view> pieces;
  pieces.clear();
  if (bpe_->characters()) {  // no regex to refuse ill-formed UTF-8 on the way
    if (const size_t bad = invalid_utf8_at(text); bad != std::string_view::npos)
      fail("text is not valid UTF-8 at byte ", bad, " of a part of ", text.size(), " bytes");
    if (!metaspace_) return bpe_->encode(text, out);
    thread_local std::string spaced;
    metaspace_->apply(text, !continues && metaspace_->prefixes(text, at_start), spaced, pieces);
    for (auto piece : pieces) bpe_->encode(piece, out);
    return;
  }
  std::string prefixed;
  if (!continues && prefixes(text, at_start)) {
    prefixed = " " + std::string(text);
    text = prefixed;
  }
  if (!splitter_) return bpe_->encode(text, out);
  splitter_->split(text, pieces);
  for (auto piece : pieces) bpe_->encode(piece, out);
}

std::string Tokenizer::decode(const std::vector<uint32_t>& ids, bool skip_special_tokens) const {
  // Like Hugging Face, every token (added ones too) goes through the decoder.
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (uint32_t id : ids) {
    if (const AddedToken* a = added_token(id)) {
      // A normalised one as it was matched (Hugging Face's id_to_token since tokenizers 0.23).
      if (!(skip_special_tokens && a->special)) tokens.push_back(a->matched);
      continue;
    }
    const std::string* symbol = bpe_->symbol(id);
    if (!symbol) fail(source_, ": id ", id, " is not in the vocabulary");
    tokens.push_back(*symbol);
  }
  return decoder_.decode(std::move(tokens));
}

const AddedToken* Tokenizer::added_token(uint32_t id) const {
  return id < added_index_.size() && added_index_[id] >= 0 ? &added_[static_cast<size_t>(added_index_[id])] : nullptr;
}

std::vector<size_t> Tokenizer::token_ends(std::string_view text, const std::vector<uint32_t>& ids) const {
  // Each id is matched against TEXT where the last one ended, byte for byte, except that a space
  // symbol (SentencePiece's "▁") stands for a space or itself, and that the prefix encode gave the
  // first token of a part ("▁", or ByteLevel's prefix space) stands for nothing.
  std::vector<size_t> ends;
  ends.reserve(ids.size());
  size_t at = 0;
  const std::string& space = space_symbol_;
  auto mismatch = [&](uint32_t id) {
    fail(source_, ": the tokens do not spell the text: token ", id, " does not match it at byte ", at, " of ", text.size(),
         " (the tokenizer's normalizer changed the text: write it in NFC; or an unk)");
  };
  bool prefix = prefixes(text, /*at_start=*/true);  // the next part's first token starts with a prefix
  for (uint32_t id : ids) {
    const AddedToken* a = added_token(id);
    const int fallback = a ? -1 : bpe_->fallback_byte(id);
    if (fallback >= 0) {  // one byte of a character outside the vocabulary
      if (at >= text.size() || static_cast<unsigned char>(text[at]) != fallback) mismatch(id);
      ends.push_back(++at);
      continue;
    }
    const std::string* symbol = a ? nullptr : bpe_->symbol(id);
    if (!a && !symbol) fail(source_, ": id ", id, " is not in the vocabulary");
    if (a && a->lstrip)  // it took in the whitespace before it
      while (at < text.size() && text.compare(at, a->matched.size(), a->matched) != 0) {
        const auto [c, next] = code_point_at(text, at);
        if (!is_whitespace(c)) break;
        at = next;
      }
    const bool characters = bpe_->characters() || (a && a->normalized);  // a "▁" may stand for a space
    const std::string spelled = a ? a->matched : bpe_->characters() ? *symbol : byte_level_decode(*symbol);
    size_t i = 0;
    const std::string& lead = bpe_->characters() ? space : std::string(" ");
    if (prefix && (!a || a->normalized) && spelled.compare(0, lead.size(), lead) == 0) {
      i = lead.size();  // the prefix, "▁" or a space, stands for nothing (a normalised token matched with it: "▁</s>")
      prefix = false;
    } else if (prefix && !a) {
      mismatch(id);
    }
    while (i < spelled.size()) {
      if (characters && space != " " && spelled.compare(i, space.size(), space) == 0) {
        if (at < text.size() && text[at] == ' ') ++at;
        else if (text.compare(at, space.size(), space) == 0) at += space.size();
        else mismatch(id);
        i += space.size();
      } else {
        if (at >= text.size() || text[at] != spelled[i]) mismatch(id);
        ++at, ++i;
      }
    }
    if (a && a->rstrip) at = whitespace_end(text, at);  // and after it
    ends.push_back(at);
    // After an added token a new part begins: the raw text's parts get the normaliser's Prepend
    // and the pre-tokenizer's prefix, the normalised text's the pre-tokenizer's alone.
    if (a) prefix = prefixes(text.substr(at), /*at_start=*/false, /*normalised_part=*/a->normalized);
  }
  if (at != text.size()) fail(source_, ": the tokens do not spell the text (", text.size(), " bytes, the tokens end at ", at, ")");
  return ends;
}

}  // namespace lofi::data
