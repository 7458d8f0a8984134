// safetensors read and write (the format Hugging Face and timm publish weights in): an 8-byte
// little-endian header length, a JSON header of {name: {dtype, shape, data_offsets}} plus an
// optional "__metadata__" string map, then the raw little-endian tensor bytes.
// Hand-written because no maintained C++ safetensors library is packaged for Debian; the format
// is small and fully specified, and every header field is validated before any byte is read.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lofi/io/atomic_file.h"
#include "lofi/io/mapped_file.h"

namespace lofi::io {

// Named tensors in file order.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
using Metadata = std::map<std::string, std::string>;

struct TensorEntry {
  std::string name;
  std::string dtype;            // safetensors spelling, e.g. "F32"
  std::vector<int64_t> shape;   // e.g. {768, 768}
  size_t begin = 0, end = 0;    // byte offsets into the data section
};

// A parsed, memory-mapped safetensors file. Construction validates the whole header.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return map_.path(); }
  const std::vector<TensorEntry>& entries() const { return entries_; }
  const Metadata& metadata() const { return metadata_; }
  size_t data_bytes() const { return map_.size() - data_start_; }
  const TensorEntry* find(const std::string& name) const;
  // An owning copy of tensor NAME in its stored dtype; throws naming the file if absent.
  torch::Tensor load(const std::string& name) const;
  torch::Tensor load(const TensorEntry& entry) const;
  NamedTensors load_all() const;
  // A read-only tensor over the mapped bytes (no copy) when they are aligned for the dtype,
  // else an owning copy. Valid while this file lives; never write to it.
  torch::Tensor view(const TensorEntry& entry) const;
  // Copies elements [FIRST, FIRST + COUNT) of ENTRY into DST (raw stored bytes) with pread.
  void read_range(const TensorEntry& entry, int64_t first, int64_t count, void* dst) const;
  // The whole file's XXH3-64 checksum as 16 hex digits (libxxhash; `xxhsum -H3 FILE` prints the
  // same), read in blocks.
  std::string checksum() const;

 private:
  MappedFile map_;
  size_t data_start_ = 0;
  std::vector<TensorEntry> entries_;
  Metadata metadata_;
};

// Parses and validates a header (the JSON text) against a data section of DATA_BYTES bytes.
// SOURCE names the file in errors. Exposed for tests and fuzzing.
std::vector<TensorEntry> parse_safetensors_header(const std::string& json_text, size_t data_bytes,
                                                  Metadata* metadata, const std::string& source);

// Writes a file tensor by tensor: the header is fixed up front from each tensor's name, dtype
// and shape, then write() takes the tensors in that order. Nothing appears at PATH until
// commit(); a writer destroyed before it leaves nothing behind.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, const std::vector<TensorEntry>& layout, const Metadata& metadata);
  void write(const torch::Tensor& tensor);  // the next tensor of the layout
  // Raw little-endian bytes continuing the current tensor (a tensor may come in pieces).
  void write_bytes(const void* data, size_t bytes);
  void commit();

 private:
  std::vector<TensorEntry> layout_;
  size_t next_ = 0;         // tensor being written
  size_t written_ = 0;      // bytes of it written so far
  std::unique_ptr<AtomicFile> file_;
};

// Writes TENSORS (contiguous copies are made as needed) atomically to PATH.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata = {});

torch::Dtype dtype_from_safetensors(const std::string& name, const std::string& source);
std::string dtype_to_safetensors(torch::Dtype dtype);

}  // namespace lofi::io
