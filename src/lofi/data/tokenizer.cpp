// Reading Hugging Face tokenizer directories and encoding as their tokenizers do. Hand-written
// because no Debian package provides Hugging Face's tokenizers for C++; the byte-level BPE path is
// small, and tests/tokenizer_test.cpp checks it id for id against Hugging Face's own implementation.
#include "lofi/data/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>

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
  return t;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_word_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
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
        t.added_.push_back({token, id.get<uint32_t>(), false});
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
    if (it == t.added_.end()) t.added_.push_back({s, id, true});
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
    fail(path, ": model.type = \"", type, "\" is not supported: lofi reads byte-level BPE tokenizers (GPT-2, OPT, Llama 3, ",
         "Qwen2), not SentencePiece-style ones");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && model[key] != "")
      fail(path, ": model.", key, " = ", model[key].dump(), " is not supported (expected null or \"\")");
  if (model.value("byte_fallback", false))
    fail(path, ": model.byte_fallback = true is a SentencePiece-style BPE (Llama 2, Mistral v0.1), which lofi does not read; ",
         "it reads byte-level BPE tokenizers (GPT-2, OPT, Llama 3, Qwen2)");
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
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const std::string kind = j["normalizer"].is_object() ? j["normalizer"].value("type", "?") : "?";
    if (kind != "NFC") fail(path, ": normalizer ", kind, " is not supported (lofi honours NFC, as Qwen2's tokenizers use, or none)");
    t.nfc_ = true;
  }

  // Pre-tokenizer: ByteLevel (GPT-2's pattern unless use_regex is false), optionally after a
  // Split with its own pattern (the Llama 3 / GPT-4 layout).
  std::string pattern;
  bool byte_level = false;
  auto pre = [&](const json& p) {
    std::string kind = p.value("type", "");
    if (kind == "ByteLevel") {
      byte_level = true;
      t.add_prefix_space_ = p.value("add_prefix_space", false);
      if (p.value("use_regex", true)) pattern = kGpt2Pattern;
    } else if (kind == "Split" && p.contains("pattern") && p["pattern"].contains("Regex") &&
               p.value("behavior", "") == "Isolated" && !p.value("invert", false)) {
      pattern = p["pattern"]["Regex"].get<std::string>();
    } else {
      fail(path, ": pre_tokenizer ", p.dump().substr(0, 80), " is not supported (expected ByteLevel)");
    }
  };
  const json& pt = j.value("pre_tokenizer", json());
  if (pt.is_object() && pt.value("type", "") == "Sequence") {
    for (const auto& p : pt["pretokenizers"]) pre(p);
  } else if (pt.is_object()) {
    pre(pt);
  }
  if (!byte_level) fail(path, ": pre_tokenizer is not ByteLevel; only byte-level BPE tokenizers are supported");

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
  const json& decoder = j.value("decoder", json());
  if (!decoder.is_null() && decoder.value("type", "") != "ByteLevel")
    fail(path, ": decoder ", decoder.value("type", "?"), " is not supported (expected ByteLevel)");

  json config = read_json_if_present(dir + "/tokenizer_config.json");
  if (config.is_object() && config.contains("eos_token")) t.eos_token_ = token_content(config["eos_token"]);
  if (config.is_object() && config.contains("bos_token")) t.bos_token_ = token_content(config["bos_token"]);

  auto where = [&](size_t i) { return path + ": model.merges[" + std::to_string(i) + "]"; };
  t.bpe_ = std::make_unique<BytePairEncoder>(std::move(vocab), merges, where, unk, model.value("ignore_merges", false));
  if (!pattern.empty()) t.splitter_ = std::make_unique<RegexSplitter>(pattern);
  t.finish(path);
  return t;
}

void Tokenizer::finish(const std::string& source) {
  source_ = source;
  for (const auto& [text, id] : bpe_->vocab()) vocab_size_ = std::max(vocab_size_, id + 1);
  for (const auto& a : added_) vocab_size_ = std::max(vocab_size_, a.id + 1);
  // Longest first, so that the first token matching at a position is the longest one there.
  std::stable_sort(added_.begin(), added_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  for (const auto& a : added_) first_byte_[static_cast<unsigned char>(a.content[0])] = true;
  for (uint32_t id : prefix_) decode({id});  // fails on ids nothing defines
  for (uint32_t id : suffix_) decode({id});
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
  encode_added(text, /*special_pass=*/true, ids);
  if (add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<uint32_t>& out, bool continues) const {
  if (nfc_) {
    const std::string normalised = nfc(text);
    return encode_added(normalised, /*special_pass=*/false, out, continues);
  }
  encode_added(text, /*special_pass=*/false, out, continues);
}

void Tokenizer::encode_added(std::string_view text, bool special_pass, std::vector<uint32_t>& out, bool continues) const {
  auto plain = [&](std::string_view part) {
    if (part.empty()) return;
    if (!special_pass) return encode_plain(part, out, continues && part.data() == text.data());
    // Between special tokens: normalised, then the other added tokens are matched in it.
    if (!nfc_) return encode_added(part, false, out, continues);
    const std::string normalised = nfc(part);
    encode_added(normalised, false, out, continues);
  };
  // Hugging Face matches special tokens first, then the other added tokens in what is left.
  bool any = std::any_of(added_.begin(), added_.end(), [&](const AddedToken& a) { return a.special == special_pass; });
  if (!any) return plain(text);
  size_t done = 0;  // TEXT before this is handled
  for (size_t i = 0; i < text.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) continue;
    const AddedToken* hit = nullptr;
    for (const auto& a : added_) {
      if (a.special != special_pass || text.compare(i, a.content.size(), a.content) != 0) continue;
      size_t end = i + a.content.size();
      if (a.single_word && ((i > 0 && is_word_byte(text[i - 1])) || (end < text.size() && is_word_byte(text[end])))) continue;
      hit = &a;
      break;
    }
    if (!hit) continue;
    size_t start = i, end = i + hit->content.size();
    if (hit->lstrip)
      while (start > done && is_space(text[start - 1])) --start;
    if (hit->rstrip)
      while (end < text.size() && is_space(text[end])) ++end;
    plain(text.substr(done, start - done));
    out.push_back(hit->id);
    done = end;
    i = end - 1;
  }
  plain(text.substr(done));
}

void Tokenizer::encode_plain(std::string_view text, std::vector<uint32_t>& out, bool continues) const {
  std::string prefixed;
  if (add_prefix_space_ && !continues && text[0] != ' ') {
    prefixed = " " + std::string(text);
    text = prefixed;
  }
  if (!splitter_) return bpe_->encode(text, out);
  thread_local std::vector<std::string_view> pieces;
  pieces.clear();
  splitter_->split(text, pieces);
  for (auto piece : pieces) bpe_->encode(piece, out);
}

std::string Tokenizer::decode(const std::vector<uint32_t>& ids, bool skip_special_tokens) const {
  // Like Hugging Face, every token (added ones too) goes through the byte-level decoder.
  std::string text;
  for (uint32_t id : ids) {
    auto a = std::find_if(added_.begin(), added_.end(), [&](const AddedToken& t) { return t.id == id; });
    if (a != added_.end()) {
      if (!(skip_special_tokens && a->special)) text += a->content;
      continue;
    }
    const std::string* symbol = bpe_->symbol(id);
    if (!symbol) fail(source_, ": id ", id, " is not in the vocabulary");
    text += *symbol;
  }
  return byte_level_decode(text);
}

}  // namespace lofi::data
