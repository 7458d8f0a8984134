// A read-only memory map of a whole file; token shards and safetensors are read through it so
// that only the pages actually touched are loaded.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lofi::io {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws lofi::Error naming PATH
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Copies BYTES at OFFSET into DST with pread: for streaming passes, which would otherwise pay
  // a page fault per 4 KB of a mapping they touch once.
  void read(size_t offset, size_t bytes, void* dst) const;
  // Asks the kernel to start reading BYTES at OFFSET into the page cache in the background
  // (madvise WILLNEED), so that a caller about to touch them overlaps disk reads with its work.
  void prefetch(size_t offset, size_t bytes) const;
  // Drops the whole pages inside BYTES at OFFSET from this process's memory (madvise DONTNEED):
  // a loader that has copied them out keeps one copy, not two. They read back from the file
  // (the page cache) if touched again.
  void release(size_t offset, size_t bytes) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;
};

}  // namespace lofi::io
