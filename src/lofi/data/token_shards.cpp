#include "lofi/data/token_shards.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"

namespace lofi::data {
namespace {

constexpr int32_t kMagic = 20240520;
constexpr size_t kHeaderBytes = 256 * sizeof(int32_t);

}  // namespace

TokenShards::TokenShards(const std::vector<std::string>& paths, int64_t vocab_size, const std::string& format) {
  if (paths.empty()) fail("no token data given (set data.train)");
  if (format != "auto" && format != "llm.c" && format != "raw-u16")
    fail("data.format must be \"auto\", \"llm.c\" or \"raw-u16\", found \"", format, "\"");
  for (const auto& path : paths) {
    Shard s;
    s.map = std::make_unique<io::MappedFile>(path);
    const uint8_t* bytes = s.map->data();
    size_t size = s.map->size();
    if (size == 0) fail(path, ": token file is empty");
    int32_t magic = 0;
    if (size >= 4) std::memcpy(&magic, bytes, 4);
    const std::string ext = kRawTokenExtension;
    const bool raw_name = path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0;
    const bool raw = format == "raw-u16" || (format == "auto" && raw_name && magic != kMagic);
    if (raw && magic == kMagic)
      fail(path, ": data.format = \"raw-u16\", but the file starts with llm.c's header; set data.format = \"llm.c\" (or \"auto\")");
    if (!raw && magic == kMagic) {
      if (size < kHeaderBytes) fail(path, ": truncated llm.c header (", size, " of ", kHeaderBytes, " bytes)");
      int32_t header[3];
      std::memcpy(header, bytes, sizeof(header));
      if (header[1] != 1 && header[1] != 2) fail(path, ": llm.c shard version ", header[1], ", expected 1 (uint16) or 2 (uint32)");
      s.width = header[1] == 1 ? 2 : 4;
      s.count = header[2];
      if (s.count <= 0) fail(path, ": llm.c header says ", s.count, " tokens");
      size_t need = kHeaderBytes + static_cast<size_t>(s.count) * static_cast<size_t>(s.width);
      if (size < need) fail(path, ": truncated: header says ", s.count, " tokens (", need, " bytes), file has ", size, " bytes");
      if (size > need)
        fail(path, ": ", size - need, " bytes after the ", s.count, " tokens its header declares (", need,
             " bytes): a torn or concatenated file; write it again with `lofi prepare`");
      s.ids = bytes + kHeaderBytes;
    } else if (raw) {
      if (size % 2 != 0) fail(path, ": raw uint16 token file has an odd size (", size, " bytes): truncated?");
      s.width = 2;
      s.count = static_cast<int64_t>(size / 2);
      s.ids = bytes;
    } else {
      fail(path, ": not an llm.c token file (no header with magic ", kMagic, "); if it holds headerless uint16 ids, ",
           "set data.format = \"raw-u16\" or name it *", kRawTokenExtension, "; to tokenize text, use `lofi prepare`");
    }
    for (int64_t i = 0; i < s.count; ++i) {
      uint32_t id = 0;
      std::memcpy(&id, s.ids + i * s.width, static_cast<size_t>(s.width));
      if (id >= vocab_size)
        fail(path, ": token ", i, " has id ", id, ", not below model.vocab_size = ", vocab_size);
    }
    s.first = total_;
    vocab_size_ = vocab_size;
    total_ += s.count;
    shards_.push_back(std::move(s));
  }
}

int64_t TokenShards::token(int64_t index) const {
  int64_t out = 0;
  copy(index, 1, &out);
  return out;
}

void TokenShards::copy(int64_t start, int64_t count, int64_t* out) const {
  if (start < 0 || count < 0 || start + count > total_)
    fail("token range [", start, ", ", start + count, ") is outside the data (", total_, " tokens)");
  // First shard whose range holds START.
  auto it = std::upper_bound(shards_.begin(), shards_.end(), start,
                             [](int64_t v, const Shard& s) { return v < s.first; }) - 1;
  // Read with pread, not through the mapping: a file truncated or rewritten while the run reads it
  // then ends in one clear error, where a read of a mapping past the file's new end is SIGBUS (a
  // silent death of the worker).
  thread_local std::vector<uint8_t> bytes;
  while (count > 0) {
    int64_t local = start - it->first;
    int64_t n = std::min(count, it->count - local);
    bytes.resize(static_cast<size_t>(n * it->width));
    it->map->read(static_cast<size_t>(it->ids - it->map->data()) + static_cast<size_t>(local * it->width), bytes.size(),
                  bytes.data());
    for (int64_t i = 0; i < n; ++i) {
      uint32_t id = 0;
      std::memcpy(&id, bytes.data() + i * it->width, static_cast<size_t>(it->width));
      if (id >= vocab_size_)
        fail(it->map->path(), ": token ", local + i, " has id ", id, " now, not below model.vocab_size = ", vocab_size_,
             ": the file changed while the run reads it");
      out[i] = id;
    }
    out += n;
    start += n;
    count -= n;
    ++it;
  }
}

std::vector<std::string> split_paths(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

void write_token_shard(const std::string& path, const std::vector<uint32_t>& ids) {
  bool narrow = std::all_of(ids.begin(), ids.end(), [](uint32_t id) { return id <= 0xFFFF; });
  TokenShardWriter writer(path, narrow ? 2 : 4);
  writer.append(ids.data(), ids.size());
  writer.commit();
}

TokenShardWriter::TokenShardWriter(const std::string& path, int width) : path_(path), file_(path), width_(width) {
  if (width != 2 && width != 4) fail(path, ": token width ", width, ", expected 2 or 4 bytes");
  int32_t header[256] = {};
  file_.write(header, sizeof(header));  // rewritten by commit() once the count is known
}

void TokenShardWriter::append(const uint32_t* ids, size_t count) {
  if (static_cast<uint64_t>(count_) + count > static_cast<uint64_t>(INT32_MAX))
    fail(path_, ": more than 2^31 - 1 tokens do not fit one llm.c shard; write several");
  if (width_ == 4) {
    file_.write(ids, count * 4);
  } else {
    narrow_.resize(count);
    for (size_t i = 0; i < count; ++i) {
      if (ids[i] > 0xFFFF) fail(path_, ": id ", ids[i], " does not fit a uint16 shard");
      narrow_[i] = static_cast<uint16_t>(ids[i]);
    }
    file_.write(narrow_.data(), count * 2);
  }
  count_ += static_cast<int64_t>(count);
}

void TokenShardWriter::commit() {
  int32_t header[3] = {kMagic, width_ == 2 ? 1 : 2, static_cast<int32_t>(count_)};
  file_.write_at(0, header, sizeof(header));
  file_.commit();
}

}  // namespace lofi::data
