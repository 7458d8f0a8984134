#include "lofi/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "lofi/error.h"

namespace lofi::io {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    if (!S_ISDIR(st.st_mode)) fail(path, ": not a regular file");
    // A model directory missing the file that says what it is.
    namespace fs = std::filesystem;
    std::error_code ec;
    const bool hf_weights = fs::exists(fs::path(path) / "model.safetensors", ec) ||
                            fs::exists(fs::path(path) / "model.safetensors.index.json", ec);
    if (hf_weights && !fs::exists(fs::path(path) / "config.json", ec))
      fail(path, ": a directory of Hugging Face weights without config.json; put the model's config.json beside them");
    if (fs::exists(fs::path(path) / "adapter_model.safetensors", ec) && !fs::exists(fs::path(path) / "adapter_config.json", ec))
      fail(path, ": a directory of a PEFT adapter's weights without adapter_config.json; put the adapter's config beside them");
    fail(path, ": a directory, where a file was expected (a checkpoint .safetensors, a Hugging Face model directory with ",
         "config.json, or a PEFT adapter directory with adapter_config.json)");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(path, ": cannot map: ", std::strerror(err));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  fd_ = fd;
}

void MappedFile::read(size_t offset, size_t bytes, void* dst) const {
  if (offset + bytes > size_ || offset + bytes < offset) fail(path_, ": read of ", bytes, " bytes at ", offset, " is past the end");
  auto* out = static_cast<uint8_t*>(dst);
  while (bytes > 0) {
    ssize_t n = ::pread(fd_, out, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path_, ": read failed at byte ", offset, ": ", std::strerror(errno));
    if (n == 0)
      fail(path_, ": the file ends before byte ", offset + bytes, " of the ", size_,
           " it had when opened: it was truncated or rewritten while in use");
    out += n, offset += static_cast<size_t>(n), bytes -= static_cast<size_t>(n);
  }
}

void MappedFile::prefetch(size_t offset, size_t bytes) const {
  if (!data_ || offset >= size_) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t first = offset / page * page, last = std::min(size_, offset + std::min(bytes, size_ - offset));
  ::madvise(const_cast<uint8_t*>(data_) + first, last - first, MADV_WILLNEED);  // advice only: failure is harmless
}

void MappedFile::release(size_t offset, size_t bytes) const {
  if (!data_ || offset >= size_) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t first = (offset + page - 1) / page * page, last = std::min(size_, offset + std::min(bytes, size_ - offset)) / page * page;
  if (last > first) ::madvise(const_cast<uint8_t*>(data_) + first, last - first, MADV_DONTNEED);  // advice: failure is harmless
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace lofi::io
