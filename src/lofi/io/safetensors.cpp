#include "lofi/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"

#include <xxhash.h>

namespace lofi::io {
namespace {

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64}, {"I32", torch::kInt32},
    {"I16", torch::kInt16}, {"I8", torch::kInt8}, {"U8", torch::kUInt8}, {"BOOL", torch::kBool},
    {"U16", torch::kUInt16}, {"U32", torch::kUInt32}, {"U64", torch::kUInt64},
    {"F8_E4M3", torch::kFloat8_e4m3fn}, {"F8_E5M2", torch::kFloat8_e5m2}, {"F8_E8M0", torch::kFloat8_e8m0fnu},
    {"C64", torch::kComplexFloat},
};

}  // namespace

torch::Dtype dtype_from_safetensors(const std::string& name, const std::string& source) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.dtype;
  if (safetensors_dtype_size(name) != 0)
    fail(source, ": dtype ", name, " has no LibTorch equivalent; convert the file, e.g. with PyTorch, first");
  fail(source, ": unsupported dtype '", name, "' (expected one of safetensors' dtypes, e.g. F32, BF16, F16, I64, U8)");
}

std::string dtype_to_safetensors(torch::Dtype dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.dtype) return d.name;
  fail("safetensors: cannot store dtype ", c10::toString(dtype));
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : map_(path), layout_(parse_safetensors_file(map_.data(), map_.size(), path)) {}

torch::Dtype SafetensorsFile::dtype_of(const TensorEntry& entry) const {
  return dtype_from_safetensors(entry.dtype, cat(path(), ": tensor '", entry.name, "'"));
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  for (const auto& e : entries())
    if (e.name == name) return &e;
  return nullptr;
}

torch::Tensor SafetensorsFile::load(const std::string& name) const {
  const TensorEntry* e = find(name);
  if (!e) fail(path(), ": no tensor named '", name, "'");
  return load(*e);
}

torch::Tensor SafetensorsFile::load(const TensorEntry& entry) const {
  torch::Tensor out = torch::empty(entry.shape, dtype_of(entry));
  if (entry.end > entry.begin)
    std::memcpy(out.data_ptr(), map_.data() + layout_.data_start + entry.begin, entry.end - entry.begin);
  return out;
}

torch::Tensor SafetensorsFile::view(const TensorEntry& entry) const {
  torch::Dtype dtype = dtype_of(entry);
  const uint8_t* p = map_.data() + layout_.data_start + entry.begin;
  if (entry.end == entry.begin || reinterpret_cast<uintptr_t>(p) % c10::elementSize(dtype) != 0) return load(entry);
  // Views are made to be read: start reading now, so that loading many tensors overlaps the
  // disk with the copies of the ones before (a cold 1.3B-parameter load: see bench/load_bench).
  map_.prefetch(layout_.data_start + entry.begin, entry.end - entry.begin);
  return torch::from_blob(const_cast<uint8_t*>(p), entry.shape, torch::TensorOptions().dtype(dtype));
}

void SafetensorsFile::release(const TensorEntry& entry) const {
  map_.release(layout_.data_start + entry.begin, entry.end - entry.begin);
}

void SafetensorsFile::read_range(const TensorEntry& entry, int64_t first, int64_t count, void* dst) const {
  const size_t elem = c10::elementSize(dtype_of(entry));
  const size_t numel = (entry.end - entry.begin) / elem;
  if (first < 0 || count < 0 || static_cast<size_t>(first) > numel || static_cast<size_t>(count) > numel - first)
    fail(path(), ": elements [", first, ", ", first, " + ", count, ") are outside tensor '", entry.name, "'");
  map_.read(layout_.data_start + entry.begin + static_cast<size_t>(first) * elem, static_cast<size_t>(count) * elem, dst);
}

namespace {

std::string hex64(uint64_t h) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace

std::string SafetensorsFile::checksum() const { return hash_range(0); }

std::string SafetensorsFile::data_checksum() const { return hash_range(layout_.data_start); }

void SafetensorsFile::verify_data_checksum() const {
  auto it = metadata().find(kDataChecksumKey);
  if (it == metadata().end()) return;
  const std::string actual = data_checksum();
  if (actual != it->second)
    fail(path(), ": its data hashes to ", actual, " but its header recorded ", it->second,
         " (", kDataChecksumKey, "): the file is damaged, or rewritten by a tool that kept lofi's metadata (if so, ",
         "drop ", kDataChecksumKey, " from it)");
}

std::string SafetensorsFile::hash_range(size_t begin) const {
  constexpr size_t kBlock = 8u << 20;
  std::vector<uint8_t> block(kBlock);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (size_t at = begin; at < map_.size(); at += kBlock) {
    size_t n = std::min(kBlock, map_.size() - at);
    map_.read(at, n, block.data());
    XXH3_64bits_update(state, block.data(), n);
  }
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return hex64(digest);
}

NamedTensors SafetensorsFile::load_all() const {
  NamedTensors out;
  for (const auto& e : entries()) out.emplace_back(e.name, load(e));
  return out;
}

struct SafetensorsWriter::Hash {
  XXH3_state_t* state = XXH3_createState();
  size_t digits_at = 0;  // file offset of the checksum's 16 hex digits
  Hash() { XXH3_64bits_reset(state); }
  ~Hash() { XXH3_freeState(state); }
};

SafetensorsWriter::SafetensorsWriter(const std::string& path, const std::vector<TensorEntry>& layout,
                                     const Metadata& metadata, bool checksum)
    : layout_(layout) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  Metadata meta = metadata;
  // The checksum is this writer's to give: one carried over from the file METADATA came from would
  // call this one damaged.
  meta.erase(kDataChecksumKey);
  const std::string placeholder(16, '0');
  if (checksum) meta[kDataChecksumKey] = placeholder;
  if (!meta.empty()) header["__metadata__"] = meta;
  std::set<std::string> names;
  size_t offset = 0;
  for (auto& e : layout_) {
    if (!names.insert(e.name).second) fail(path, ": tensor '", e.name, "' given twice");
    const size_t elem = safetensors_dtype_size(e.dtype);
    if (elem == 0) fail(path, ": tensor '", e.name, "' has unknown dtype '", e.dtype, "'");
    size_t bytes = elem;
    for (int64_t d : e.shape)
      if (d < 0 || __builtin_mul_overflow(bytes, static_cast<size_t>(d), &bytes))
        fail(path, ": tensor '", e.name, "' has an invalid or oversized shape ", torch::IntArrayRef(e.shape));
    e.begin = offset;
    e.end = offset + bytes;
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // 8-byte aligned data, as the reference pads it
  if (checksum) {
    hash_ = std::make_unique<Hash>();
    // Quotes inside a JSON string are escaped, so only the key itself reads this way.
    const std::string key = cat("\"", kDataChecksumKey, "\":\"");
    const size_t at = text.find(key + placeholder + "\"");
    if (at == std::string::npos) fail("internal: ", path, ": the header has no place for its checksum");
    hash_->digits_at = 8 + at + key.size();
  }
  uint64_t header_bytes = text.size();
  file_ = std::make_unique<AtomicFile>(path);
  file_->write(&header_bytes, 8);
  file_->write(text);
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::write(const torch::Tensor& tensor) {
  if (next_ >= layout_.size()) fail("safetensors writer: more tensors than the layout holds");
  const TensorEntry& e = layout_[next_];
  torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
  if (written_ != 0 || dtype_to_safetensors(t.scalar_type()) != e.dtype || t.sizes() != torch::IntArrayRef(e.shape))
    fail("safetensors writer: tensor '", e.name, "' is ", t.scalar_type(), " ", t.sizes(), ", the header says ", e.dtype,
         " ", torch::IntArrayRef(e.shape));
  write_bytes(t.data_ptr(), e.end - e.begin);
}

void SafetensorsWriter::write_bytes(const void* data, size_t bytes) {
  while (next_ < layout_.size() && layout_[next_].end == layout_[next_].begin) ++next_;  // empty tensors
  if (bytes == 0) return;  // an empty tensor, also as the last one
  if (next_ >= layout_.size()) fail("safetensors writer: more data than the layout holds");
  const TensorEntry& e = layout_[next_];
  if (written_ + bytes > e.end - e.begin)
    fail("safetensors writer: ", written_ + bytes, " bytes for tensor '", e.name, "' of ", e.end - e.begin);
  file_->write(data, bytes);
  if (hash_) XXH3_64bits_update(hash_->state, data, bytes);
  written_ += bytes;
  if (written_ == e.end - e.begin) ++next_, written_ = 0;
}

void SafetensorsWriter::commit() {
  while (next_ < layout_.size() && layout_[next_].end == layout_[next_].begin) ++next_;
  if (next_ != layout_.size()) fail("safetensors writer: ", layout_.size() - next_, " tensors were not written");
  if (hash_) {
    const std::string digits = hex64(XXH3_64bits_digest(hash_->state));
    file_->write_at(hash_->digits_at, digits.data(), digits.size());
  }
  file_->commit();
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata, bool checksum) {
  std::vector<TensorEntry> layout;
  for (const auto& [name, t] : tensors) layout.push_back({name, dtype_to_safetensors(t.scalar_type()), t.sizes().vec(), 0, 0});
  SafetensorsWriter writer(path, layout, metadata, checksum);
  for (const auto& [name, t] : tensors) writer.write(t);
  writer.commit();
}

}  // namespace lofi::io
