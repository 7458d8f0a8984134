// Weights split over several safetensors files, as Hugging Face publishes large models: reading
// a single file, a model.safetensors.index.json (its weight_map names each tensor's shard), or a
// directory holding either, as one set; and writing a layout as such shards plus their index.
// The index is checked against the shards before any tensor is used.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lofi/io/safetensors.h"

namespace lofi::io {

class SafetensorsSet {
 public:
  // PATH: a .safetensors file, an *.index.json, or a directory with model.safetensors or
  // model.safetensors.index.json (the single file first, as transformers looks).
  explicit SafetensorsSet(const std::string& path);

  const std::string& source() const { return source_; }  // the file or index errors name
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  struct Tensor {
    const SafetensorsFile* file;
    const TensorEntry* entry;
  };
  // Every tensor, shard by shard, in each shard's order.
  const std::vector<Tensor>& tensors() const { return tensors_; }
  const Tensor* find(const std::string& name) const;
  // Read-only views (see SafetensorsFile::view) of every tensor; valid while the set lives.
  NamedTensors views() const;
  // SafetensorsFile::release of tensor NAME, if the set has it.
  void release(const std::string& name) const;
  // The first file's metadata (shards written together repeat it).
  const Metadata& metadata() const { return files_[0]->metadata(); }
  // The files' XXH3-64 checksums (see SafetensorsFile::checksum), joined by "+" in file order.
  std::string checksum() const;
  // SafetensorsFile::verify_data_checksum of every file: throws naming a damaged one.
  void verify_data_checksums() const;

 private:
  void index_names();

  std::map<std::string, size_t> by_name_;  // name -> index into tensors_
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<Tensor> tensors_;
};

// Appends tensor LAYOUT[I]'s bytes to WRITER (the writer of the shard holding it).
using TensorWriteFn = std::function<void(SafetensorsWriter& writer, size_t i)>;

// Writes LAYOUT into the existing directory DIR as model-0000k-of-0000N.safetensors files of at
// most SHARD_BYTES each (a larger tensor gets a shard of its own) plus model.safetensors.index.json;
// SHARD_BYTES <= 0 writes one model.safetensors and no index. Returns the file names written.
std::vector<std::string> write_safetensors_shards(const std::string& dir, const std::vector<TensorEntry>& layout,
                                                  int64_t shard_bytes, const Metadata& metadata,
                                                  const TensorWriteFn& write_tensor);

}  // namespace lofi::io
