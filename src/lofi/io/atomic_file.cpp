#include "lofi/io/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "lofi/error.h"
#include "lofi/io/temporaries.h"

namespace lofi::io {

namespace {

// What a path that is not a regular file is, for the refusal: renaming over it would replace it.
const char* kind_of(const std::filesystem::file_status& status) {
  switch (status.type()) {
    case std::filesystem::file_type::directory: return "a directory";
    case std::filesystem::file_type::character: return "a character device";
    case std::filesystem::file_type::block: return "a block device";
    case std::filesystem::file_type::fifo: return "a FIFO";
    case std::filesystem::file_type::socket: return "a socket";
    default: return "not a regular file";
  }
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  // The temporary is renamed over PATH: a device, FIFO or directory there (e.g. --out /dev/null)
  // would be replaced by a regular file, so only a regular file (or a link to one) or nothing.
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(path_, ec);
  if (!ec && std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    fail(path_, ": exists and is ", kind_of(status), "; lofi writes a new file there by renaming, which would replace it: ",
         "give the path of a regular file");
  remove_dead_writers_temporaries(path_);
  tmp_ = path_ + ".tmp-" + std::to_string(::getpid());
  // Registered before it exists: a signal the moment after it is created still removes it.
  register_temporary(tmp_, /*directory=*/false);
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (!file_) {
    const int error = errno;
    unregister_temporary(tmp_);
    fail(path_, ": cannot open for writing: ", std::strerror(error));
  }
}

AtomicFile::~AtomicFile() {
  if (file_) {
    std::fclose(file_);
    std::remove(tmp_.c_str());
    unregister_temporary(tmp_);
  }
}

void AtomicFile::write(const void* data, size_t bytes) {
  if (bytes && std::fwrite(data, 1, bytes, file_) != bytes)
    fail(path_, ": write failed: ", std::strerror(errno));
}

void AtomicFile::write_at(size_t offset, const void* data, size_t bytes) {
  if (std::fseek(file_, static_cast<long>(offset), SEEK_SET) != 0 || std::fwrite(data, 1, bytes, file_) != bytes ||
      std::fseek(file_, 0, SEEK_END) != 0)
    fail(path_, ": write failed: ", std::strerror(errno));
}

void AtomicFile::commit() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
    fail(path_, ": flush failed: ", std::strerror(errno));
  std::fclose(file_);
  file_ = nullptr;
  const int renamed = std::rename(tmp_.c_str(), path_.c_str());
  const int err = errno;
  if (renamed != 0) std::remove(tmp_.c_str());
  unregister_temporary(tmp_);
  if (renamed != 0) fail(path_, ": cannot rename into place: ", std::strerror(err));
}

StagedDir::StagedDir(const std::string& dir) : dir_(std::filesystem::path(dir).lexically_normal().string()) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();  // "out/" -> "out"
  if (std::filesystem::exists(dir_)) fail(dir_, ": exists; the output must be a new directory");
  remove_dead_writers_temporaries(dir_);
  tmp_ = dir_ + ".tmp-" + std::to_string(::getpid());
  std::filesystem::remove_all(tmp_);  // a leftover of a killed run with our pid
  register_temporary(tmp_, /*directory=*/true);  // before it exists, as AtomicFile's
  try {
    make_dirs(tmp_);
  } catch (...) {
    unregister_temporary(tmp_);
    throw;
  }
}

StagedDir::~StagedDir() {
  std::error_code ec;
  if (!committed_) std::filesystem::remove_all(tmp_, ec);
  unregister_temporary(tmp_);
}

void StagedDir::commit() {
  std::error_code ec;
  std::filesystem::rename(tmp_, dir_, ec);
  if (ec) fail(dir_, ": cannot rename ", tmp_, " into place: ", ec.message());
  committed_ = true;
  unregister_temporary(tmp_);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  AtomicFile file(path);
  file.write(text);
  file.commit();
}

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open: ", std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void make_dirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(dir, ": cannot create directory: ", ec.message());
}

}  // namespace lofi::io
