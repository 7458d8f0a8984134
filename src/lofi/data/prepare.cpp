// prepare: read documents in batches (reader: this thread), tokenize batches on worker threads,
// write their ids in input order. At most one batch per thread is in flight, so memory stays
// bounded whatever the corpus size.
#include "lofi/data/prepare.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "lofi/data/token_shards.h"
#include "lofi/data/tokenizer.h"
#include "lofi/error.h"
#include "lofi/text.h"

namespace lofi::data {
namespace {

constexpr size_t kBatchBytes = 1 << 20;  // text per task: large enough to dwarf scheduling costs
constexpr size_t kChunkBytes = 4 << 20;  // plain-text documents longer than this are cut at line breaks

// A document or a part of one, with where it came from.
struct Unit {
  std::string text;  // raw text, or the JSONL line holding it
  int64_t doc = 0;   // document index across all inputs
  int64_t line = 0;  // JSONL line number; 0 for plain text
  bool continues = false;  // a later part of a plain-text document cut at a line break
};

struct Batch {
  std::string file;
  std::vector<Unit> units;
  size_t bytes = 0;
};

struct BatchIds {
  std::vector<uint32_t> ids[2];  // train, val
  int64_t docs[2] = {0, 0};
  size_t bytes = 0;
};

bool unicode_space(uint32_t c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// The code point that starts at or ends just before AT (BACKWARD) in TEXT.
uint32_t code_point(const std::string& text, size_t at, bool backward) {
  size_t start = at;
  if (backward)
    do --start;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80);
  auto lead = static_cast<unsigned char>(text[start]);
  size_t n = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  uint32_t cp = n == 1 ? lead : lead & (0x7F >> n);
  for (size_t k = 1; k < n && start + k < text.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[start + k]) & 0x3F);
  return cp;
}

// A place to cut TEXT at or after FROM that pre-tokenises the same whole or in parts: just after a
// '\n' with no whitespace on either side of it, the '\n' is a piece of its own and no piece reaches
// over it. npos when there is none yet.
size_t safe_cut(const std::string& text, size_t from) {
  for (size_t nl = text.find('\n', from); nl != std::string::npos; nl = text.find('\n', nl + 1)) {
    if (nl == 0 || nl + 1 >= text.size()) continue;
    if (!unicode_space(code_point(text, nl, true)) && !unicode_space(code_point(text, nl + 1, false))) return nl + 1;
  }
  return std::string::npos;
}

// JSON lines by name (.jsonl, .ndjson, .json), or by a first non-blank line that is a JSON
// object: read as JSON, a line without a string "text" is then named, never tokenized as text.
// A JSON array (a whole-file JSON document) is refused: lofi reads one object per line.
bool looks_like_jsonl(const std::string& path) {
  auto ext = std::filesystem::path(path).extension().string();
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line) && line.find_first_not_of(" \t\r") == std::string::npos) {
  }
  const size_t first = line.find_first_not_of(" \t\r");
  if (first != std::string::npos && line[first] == '[' && (ext == ".json" || nlohmann::json::accept(line)))
    fail(path, ": a JSON array; lofi reads JSON lines, one {\"text\": ...} object per line (convert with jq -c '.[]')");
  if (ext == ".jsonl" || ext == ".ndjson" || ext == ".json") return true;
  return nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false).is_object();
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

BatchIds tokenize_batch(const Batch& batch, const Tokenizer& tok, uint32_t eot, const PrepareOptions& o) {
  BatchIds r;
  r.bytes = batch.bytes;
  for (const auto& u : batch.units) {
    int split = is_validation_document(o.seed, u.doc, o.val_fraction) ? 1 : 0;
    std::string_view text = u.text;
    std::string from_json;
    if (u.line > 0) {
      auto j = nlohmann::json::parse(u.text, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) fail(batch.file, ":", u.line, ": not valid JSON (expected one object per line)");
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
        fail(batch.file, ":", u.line, ": expected an object with a string \"text\", found ", j.dump().substr(0, 60));
      from_json = j["text"].get<std::string>();
      text = from_json;
    }
    if (!u.continues) r.ids[split].push_back(eot), ++r.docs[split];
    try {
      tok.encode_ordinary(text, r.ids[split], u.continues);
    } catch (const Error& e) {
      fail(batch.file, u.line > 0 ? ":" + std::to_string(u.line) : std::string(), ": ", e.what());
    }
  }
  return r;
}

// One split's output: shards of at most LIMIT tokens (one file when LIMIT is 0), committed together.
class SplitWriter {
 public:
  // PREFIX: "data/web." (data/web.train.bin) or "data/" (data/train.bin).
  SplitWriter(std::string prefix, std::string name, int width, int64_t limit)
      : prefix_(std::move(prefix)), name_(std::move(name)), width_(width), limit_(limit) {}
  void append(const std::vector<uint32_t>& ids) {
    for (size_t done = 0; done < ids.size();) {
      if (files_.empty() || (limit_ > 0 && files_.back()->size() >= limit_)) {
        char suffix[32];
        std::snprintf(suffix, sizeof(suffix), "-%05zu", files_.size());
        files_.push_back(std::make_unique<TokenShardWriter>(prefix_ + name_ + (limit_ > 0 ? suffix : "") + ".bin", width_));
      }
      size_t room = limit_ > 0 ? static_cast<size_t>(limit_ - files_.back()->size()) : ids.size() - done;
      size_t n = std::min(room, ids.size() - done);
      files_.back()->append(ids.data() + done, n);
      done += n;
    }
  }
  std::vector<std::string> commit() {
    std::vector<std::string> paths;
    for (auto& f : files_) f->commit(), paths.push_back(f->path());
    return paths;
  }

 private:
  std::string prefix_, name_;
  int width_;
  int64_t limit_;
  std::vector<std::unique_ptr<TokenShardWriter>> files_;
};

// Files an earlier prepare wrote with PREFIX that this one did not (a val split, shards past the
// last, a single file beside shards): left beside the new ones, a glob or a data.val would mix
// two corpora. Removed; their names returned.
std::vector<std::string> remove_stale_outputs(const std::string& prefix, const std::vector<std::string>& train,
                                              const std::vector<std::string>& val) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(prefix).parent_path().empty() ? fs::path(".") : fs::path(prefix).parent_path();
  const std::string stem = fs::path(prefix).filename().string();  // "web." or "" (a directory)
  static const std::regex split_file(R"((train|val)(-[0-9]{5})?\.bin)");
  std::set<fs::path> written;
  for (const auto* list : {&train, &val})
    for (const auto& f : *list) written.insert(fs::path(f).filename());
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const fs::path name = e.path().filename();
    const std::string text = name.string();
    if (!e.is_regular_file() || written.count(name) || text.rfind(stem, 0) != 0 || !std::regex_match(text.substr(stem.size()), split_file))
      continue;
    if (fs::remove(e.path(), ec)) removed.push_back(e.path().string());
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

}  // namespace

bool is_validation_document(uint64_t seed, int64_t index, double fraction) {
  if (fraction <= 0) return false;
  uint64_t h = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(index)));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < fraction;
}

PrepareSummary prepare_tokens(const PrepareOptions& o) {
  if (o.inputs.empty()) fail("prepare: no input files given");
  if (o.out.empty()) fail("prepare: no output prefix given (--out)");
  if (!(o.val_fraction >= 0 && o.val_fraction < 1)) fail("prepare: --val-fraction ", o.val_fraction, ", expected 0 <= f < 1");
  if (o.shard_tokens < 0) fail("prepare: --shard-tokens ", o.shard_tokens, ", expected >= 0");
  PrepareSummary summary;
  for (const auto& path : o.inputs) {
    std::error_code ec;
    if (std::filesystem::is_directory(path)) fail(path, ": is a directory, expected a text or JSONL file");
    auto size = std::filesystem::file_size(path, ec);
    if (ec) fail(path, ": cannot read: ", ec.message());
    summary.input_bytes += static_cast<int64_t>(size);
  }
  Tokenizer tok = Tokenizer::load(o.tokenizer);
  const uint32_t eot = tok.end_of_text();
  // OUT is a prefix (OUT.train.bin), or a directory when it is one or ends in '/' (OUT/train.bin).
  const bool into_dir = o.out.back() == '/' || std::filesystem::is_directory(o.out);
  const std::string prefix = into_dir ? (std::filesystem::path(o.out) / "").string() : o.out + ".";
  if (const auto parent = std::filesystem::path(prefix).parent_path(); !parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);  // --out data/web makes data/
    if (ec) fail(o.out, ": cannot create the directory ", parent.string(), ": ", ec.message());
  }
  summary.token_bytes = tok.vocab_size() <= 0x10000 ? 2 : 4;
  SplitWriter writers[2] = {{prefix, "train", summary.token_bytes, o.shard_tokens},
                            {prefix, "val", summary.token_bytes, o.shard_tokens}};
  const size_t threads = o.threads > 0 ? static_cast<size_t>(o.threads) : std::max(1u, std::thread::hardware_concurrency());
  const auto start = std::chrono::steady_clock::now();
  const bool tty = ::isatty(STDERR_FILENO);
  auto last_report = start;
  int64_t bytes_done = 0;

  auto report = [&](bool final) {
    auto now = std::chrono::steady_clock::now();
    double elapsed = std::chrono::duration<double>(now - start).count();
    if (!o.progress || (!final && now - last_report < std::chrono::milliseconds(tty ? 250 : 10000))) return;
    last_report = now;
    double rate = bytes_done / std::max(elapsed, 1e-9);
    double total = static_cast<double>(std::max<int64_t>(summary.input_bytes, 1));
    std::fprintf(stderr, "%sprepare: %5.1f%% %.1f of %.1f MB, %.1f MB/s, %lld tokens, %s %s%s", tty ? "\r" : "",
                 100.0 * bytes_done / total, bytes_done / 1e6, total / 1e6, rate / 1e6,
                 static_cast<long long>(summary.train.tokens + summary.val.tokens), final ? "took" : "ETA",
                 format_clock(final ? elapsed : (total - bytes_done) / std::max(rate, 1.0)).c_str(), tty && !final ? "   " : "\n");
    std::fflush(stderr);
  };

  std::deque<std::future<BatchIds>> pending;
  auto write_front = [&] {
    BatchIds r = pending.front().get();
    pending.pop_front();
    PrepareSplit* splits[2] = {&summary.train, &summary.val};
    for (int s = 0; s < 2; ++s) {
      writers[s].append(r.ids[s]);
      splits[s]->tokens += static_cast<int64_t>(r.ids[s].size());
      splits[s]->documents += r.docs[s];
    }
    bytes_done += static_cast<int64_t>(r.bytes);
    report(false);
  };
  auto submit = [&](Batch& batch) {
    if (batch.units.empty()) return;
    while (pending.size() >= threads) write_front();  // at most THREADS batches tokenizing at once
    Batch next;
    next.file = batch.file;
    pending.push_back(std::async(std::launch::async,
                                 [&tok, eot, &o, b = std::move(batch)] { return tokenize_batch(b, tok, eot, o); }));
    batch = std::move(next);
  };

  int64_t doc = 0;
  for (const auto& path : o.inputs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open for reading");
    Batch batch;
    batch.file = path;
    auto add = [&](Unit u, size_t bytes) {
      batch.bytes += bytes;
      batch.units.push_back(std::move(u));
      if (batch.bytes >= kBatchBytes) submit(batch);
    };
    if (looks_like_jsonl(path)) {
      std::string line;
      for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) {  // blank lines separate nothing
          batch.bytes += line.size() + 1;
          continue;
        }
        size_t bytes = line.size() + 1;
        add({std::move(line), doc++, line_no, false}, bytes);
      }
    } else {
      // One document per file, cut into parts at safe line breaks when long.
      std::string buf, block(1 << 20, '\0');
      bool continues = false;
      while (in.read(block.data(), static_cast<std::streamsize>(block.size())) || in.gcount() > 0) {
        buf.append(block.data(), static_cast<size_t>(in.gcount()));
        size_t cut;
        while (buf.size() > kChunkBytes && tok.line_breaks_end_pieces() && (cut = safe_cut(buf, kChunkBytes)) != std::string::npos) {
          add({buf.substr(0, cut), doc, 0, continues}, cut);
          buf.erase(0, cut);
          continues = true;
        }
      }
      size_t bytes = buf.size();
      if (!continues && buf.empty()) {  // an empty file is no document (it would be the end-of-text token alone)
        std::fprintf(stderr, "prepare: warning: %s is empty; left out\n", path.c_str());
        continue;
      }
      add({std::move(buf), doc++, 0, continues}, bytes);
    }
    if (in.bad()) fail(path, ": read error");
    submit(batch);
  }
  while (!pending.empty()) write_front();
  if (summary.train.documents + summary.val.documents == 0)
    fail("prepare: no document in ", o.inputs.size() == 1 ? o.inputs.front() : cat(o.inputs.size(), " inputs"),
         " (empty, or blank lines only); nothing written");
  if (summary.train.documents == 0)
    fail("prepare: no document fell in the train split (--val-fraction ", o.val_fraction, " of ", summary.val.documents,
         " documents); lower --val-fraction; nothing written");

  summary.train.files = writers[0].commit();
  summary.val.files = writers[1].commit();
  summary.removed = remove_stale_outputs(prefix, summary.train.files, summary.val.files);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report(true);
  return summary;
}

}  // namespace lofi::data
