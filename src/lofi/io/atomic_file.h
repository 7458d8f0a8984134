// Files that appear whole or not at all: write to a temporary name beside the target, then
// rename into place. An interrupted writer leaves only the temporary, which is removed.
#pragma once
#include <cstdio>
#include <string>

namespace lofi::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // opens PATH.tmp-PID for writing
  ~AtomicFile();                          // removes the temporary unless commit() ran
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(const std::string& text) { write(text.data(), text.size()); }
  // Overwrites BYTES already written at OFFSET (e.g. a header whose counts are known only at the
  // end); later writes still append.
  void write_at(size_t offset, const void* data, size_t bytes);
  void commit();  // flush, fsync, rename to the final path

 private:
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
};

// A directory that appears whole or not at all: filled under DIR.tmp-PID, renamed to DIR by
// commit(); destroyed uncommitted, the temporary is removed. DIR must not exist yet.
class StagedDir {
 public:
  explicit StagedDir(const std::string& dir);
  ~StagedDir();
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;

  const std::string& path() const { return tmp_; }   // where to write now
  const std::string& final_path() const { return dir_; }
  void commit();

 private:
  std::string dir_, tmp_;
  bool committed_ = false;
};

// Writes TEXT to PATH atomically.
void write_file_atomic(const std::string& path, const std::string& text);
std::string read_text_file(const std::string& path);
// Creates DIR and its parents; no error when it exists.
void make_dirs(const std::string& dir);

}  // namespace lofi::io
