// Token shards: files of little-endian token ids behind llm.c's header (256 int32: magic 20240520,
// version 1 = uint16 ids / 2 = uint32 ids, token count), or headerless uint16 ids where the user
// says so (data.format = "raw-u16", or a name ending in kRawTokenExtension). Files are
// memory-mapped at open, where every id is checked against the vocabulary, and then read with
// pread as one concatenated stream: a file changed while a run reads it is one clear error (a
// truncated mapping would be SIGBUS), and ids are checked again as they are read.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lofi/io/atomic_file.h"
#include "lofi/io/mapped_file.h"

namespace lofi::data {

// Files named *.u16 are headerless uint16 ids under data.format = "auto".
inline constexpr const char* kRawTokenExtension = ".u16";

class TokenShards {
 public:
  // PATHS in stream order; ids must be < VOCAB_SIZE. FORMAT: "auto" (llm.c, or raw for *.u16),
  // "llm.c" or "raw-u16". Throws naming the file.
  TokenShards(const std::vector<std::string>& paths, int64_t vocab_size, const std::string& format = "auto");

  int64_t size() const { return total_; }  // tokens in all shards
  int64_t token(int64_t index) const;
  // Copies tokens [start, start + count) of the stream into OUT.
  void copy(int64_t start, int64_t count, int64_t* out) const;

 private:
  struct Shard {
    std::unique_ptr<io::MappedFile> map;
    const uint8_t* ids = nullptr;
    int width = 2;         // bytes per id
    int64_t count = 0;     // tokens
    int64_t first = 0;     // stream index of its first token
  };
  std::vector<Shard> shards_;
  int64_t total_ = 0;
  int64_t vocab_size_ = 0;
};

// Splits a comma-separated list of paths.
std::vector<std::string> split_paths(const std::string& list);

// Writes IDS as an llm.c shard (uint16 when every id fits, else uint32), atomically.
void write_token_shard(const std::string& path, const std::vector<uint32_t>& ids);

// Streams an llm.c shard of WIDTH-byte ids (2: version 1, 4: version 2) without holding them: ids
// are appended as they come and the header's count is filled in by commit(), which renames the
// file into place. Destroyed before commit(), it leaves nothing behind.
class TokenShardWriter {
 public:
  TokenShardWriter(const std::string& path, int width);
  void append(const uint32_t* ids, size_t count);  // throws on an id wider than WIDTH
  int64_t size() const { return count_; }
  const std::string& path() const { return path_; }
  void commit();

 private:
  std::string path_;
  io::AtomicFile file_;
  int width_;
  int64_t count_ = 0;
  std::vector<uint16_t> narrow_;  // conversion buffer for uint16 shards
};

}  // namespace lofi::data
