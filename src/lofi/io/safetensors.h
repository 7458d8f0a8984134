// safetensors read and write (the format Hugging Face and timm publish weights in): an 8-byte
// little-endian header length, a JSON header of {name: {dtype, shape, data_offsets}} plus an
// optional "__metadata__" string map, then the raw little-endian tensor bytes.
// Hand-written because no maintained C++ safetensors library is packaged for Debian; the format
// is small and fully specified, and every header field is validated (safetensors_header.h) before
// any byte is read.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lofi/io/atomic_file.h"
#include "lofi/io/mapped_file.h"
#include "lofi/io/safetensors_header.h"

namespace lofi::io {

// Named tensors in file order.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// A parsed, memory-mapped safetensors file. Construction validates the whole header; entries()
// lists the tensors in data order. Every dtype of the format loads
// (LibTorch 2.x has them all, F8_* and unsigned included).
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return map_.path(); }
  const std::vector<TensorEntry>& entries() const { return layout_.entries; }
  const Metadata& metadata() const { return layout_.metadata; }
  size_t data_bytes() const { return map_.size() - layout_.data_start; }
  const TensorEntry* find(const std::string& name) const;
  // An owning copy of tensor NAME in its stored dtype; throws naming the file if absent.
  torch::Tensor load(const std::string& name) const;
  torch::Tensor load(const TensorEntry& entry) const;
  NamedTensors load_all() const;
  // A read-only tensor over the mapped bytes (no copy) when they are aligned for the dtype,
  // else an owning copy. Valid while this file lives; never write to it.
  torch::Tensor view(const TensorEntry& entry) const;
  // Lets go of ENTRY's mapped pages once a caller has copied them out (MappedFile::release);
  // views of it stay valid (they read back from the file).
  void release(const TensorEntry& entry) const;
  // Copies elements [FIRST, FIRST + COUNT) of ENTRY into DST (raw stored bytes) with pread.
  void read_range(const TensorEntry& entry, int64_t first, int64_t count, void* dst) const;
  // The whole file's XXH3-64 checksum as 16 hex digits (libxxhash; `xxhsum -H3 FILE` prints the
  // same), read in blocks.
  std::string checksum() const;
  // The XXH3-64 of the data section alone (the bytes after the header), as 16 hex digits.
  std::string data_checksum() const;
  // When the metadata carries kDataChecksumKey, throws naming the file unless the data matches it.
  void verify_data_checksum() const;

 private:
  std::string hash_range(size_t begin) const;
  torch::Dtype dtype_of(const TensorEntry& entry) const;  // throws naming the file and tensor

  MappedFile map_;
  SafetensorsLayout layout_;
};

// Writes a file tensor by tensor: the header is fixed up front from each tensor's name, dtype
// and shape (any dtype of the format), then write() takes the tensors in that order; the header is
// padded with spaces to a multiple of 8 bytes, as the reference writes it. Nothing appears at PATH until
// commit(); a writer destroyed before it leaves nothing behind. CHECKSUM adds the data's XXH3 to the
// metadata (kDataChecksumKey; one given in METADATA is dropped either way): hashed as the bytes go out, and set in the header at commit() (its
// 16 hex digits hold a place there from the start), so a file too big to hold is checksummed in one pass.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, const std::vector<TensorEntry>& layout, const Metadata& metadata,
                    bool checksum = false);
  ~SafetensorsWriter();
  void write(const torch::Tensor& tensor);  // the next tensor of the layout
  // Raw little-endian bytes continuing the current tensor (a tensor may come in pieces).
  void write_bytes(const void* data, size_t bytes);
  void commit();

 private:
  std::vector<TensorEntry> layout_;
  size_t next_ = 0;         // tensor being written
  size_t written_ = 0;      // bytes of it written so far
  std::unique_ptr<AtomicFile> file_;
  struct Hash;               // the data's XXH3 state, and where its digits go in the header
  std::unique_ptr<Hash> hash_;
};

// The metadata key of a file's data checksum (SafetensorsFile::data_checksum()).
inline constexpr const char* kDataChecksumKey = "lofi.data_xxh3";

// Writes TENSORS (contiguous copies are made as needed) atomically to PATH; CHECKSUM adds the
// data's XXH3 to the metadata (kDataChecksumKey), so a reader can tell a damaged file.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata = {}, bool checksum = false);

// The LibTorch dtype of a safetensors dtype name; SOURCE (file, tensor or flag) names it in errors.
torch::Dtype dtype_from_safetensors(const std::string& name, const std::string& source);
std::string dtype_to_safetensors(torch::Dtype dtype);

}  // namespace lofi::io
