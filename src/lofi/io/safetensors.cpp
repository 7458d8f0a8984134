#include "lofi/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"

#include <xxhash.h>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

namespace lofi::io {
namespace {

constexpr size_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's bound

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64}, {"I32", torch::kInt32},
    {"I16", torch::kInt16}, {"I8", torch::kInt8}, {"U8", torch::kUInt8}, {"BOOL", torch::kBool},
};

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

torch::Dtype dtype_from_safetensors(const std::string& name, const std::string& source) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.dtype;
  fail(source, ": unsupported dtype '", name, "' (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");
}

std::string dtype_to_safetensors(torch::Dtype dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.dtype) return d.name;
  fail("safetensors: cannot store dtype ", c10::toString(dtype));
}

std::vector<TensorEntry> parse_safetensors_header(const std::string& json_text, size_t data_bytes,
                                                  Metadata* metadata, const std::string& source) {
  // Duplicate names are legal JSON but ambiguous weights: catch them while parsing, since the
  // parsed object keeps only the last.
  std::set<std::string> seen;
  std::string duplicate;
  nlohmann::json::parser_callback_t on_event = [&](int depth, nlohmann::json::parse_event_t event,
                                                   nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1) {
      std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(json_text, on_event);
  } catch (const nlohmann::json::exception& e) {
    fail(source, ": safetensors header is not valid JSON (", e.what(), ")");
  }
  if (!duplicate.empty()) fail(source, ": tensor '", duplicate, "' appears twice in the header");
  if (!header.is_object()) fail(source, ": safetensors header must be a JSON object");

  std::vector<TensorEntry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& value = it.value();
    if (name == "__metadata__") {
      if (!value.is_object()) fail(source, ": __metadata__ must be an object of strings");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) fail(source, ": __metadata__ value '", m.key(), "' is not a string");
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto where = [&] { return cat(source, ": tensor '", name, "'"); };
    if (!value.is_object()) fail(where(), " must be an object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) fail(where(), " has no '", field, "'");
    if (!value["dtype"].is_string()) fail(where(), ": dtype is not a string");
    TensorEntry entry;
    entry.name = name;
    entry.dtype = value["dtype"].get<std::string>();
    torch::Dtype dtype = dtype_from_safetensors(entry.dtype, where());

    const auto& shape = value["shape"];
    if (!shape.is_array()) fail(where(), ": shape is not an array");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& dim : shape) {
      if (!dim.is_number_unsigned()) fail(where(), ": shape holds ", dim.dump(), ", expected non-negative integers");
      uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) overflow = true;
      if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / d) overflow = true;
      numel *= d;
      entry.shape.push_back(static_cast<int64_t>(d));
    }
    const auto& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      fail(where(), ": data_offsets must be two non-negative integers, found ", offsets.dump());
    uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end) fail(where(), ": data_offsets [", begin, ", ", end, "] run backwards");
    if (end > data_bytes)
      fail(where(), ": data_offsets end ", end, " is past the data section (", data_bytes, " bytes); file truncated?");
    uint64_t elem = c10::elementSize(dtype);
    if (overflow || numel > std::numeric_limits<uint64_t>::max() / elem || numel * elem != end - begin)
      fail(where(), ": shape ", shape.dump(), " x ", entry.dtype, " does not match its ", end - begin, " bytes");
    entry.begin = begin;
    entry.end = end;
    entries.push_back(std::move(entry));
  }

  // The data section must be covered exactly once, in order: no gaps, no overlaps.
  std::vector<const TensorEntry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorEntry* a, const TensorEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  size_t cursor = 0;
  for (const TensorEntry* e : by_offset) {
    if (e->begin != cursor)
      fail(source, ": tensor '", e->name, "' starts at byte ", e->begin, ", expected ", cursor,
           e->begin < cursor ? " (overlaps the tensor before it)" : " (gap in the data section)");
    cursor = e->end;
  }
  if (cursor != data_bytes)
    fail(source, ": tensors cover ", cursor, " of ", data_bytes, " data bytes");
  return entries;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : map_(path) {
  if (map_.size() < 8) fail(path, ": not a safetensors file (", map_.size(), " bytes, shorter than the 8-byte header length)");
  uint64_t header_bytes = read_u64_le(map_.data());
  if (header_bytes > kMaxHeaderBytes || header_bytes > map_.size() - 8)
    fail(path, ": not a safetensors file or truncated (header length ", header_bytes, ", file size ", map_.size(), ")");
  data_start_ = 8 + header_bytes;
  std::string text(reinterpret_cast<const char*>(map_.data() + 8), header_bytes);
  entries_ = parse_safetensors_header(text, map_.size() - data_start_, &metadata_, path);
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

torch::Tensor SafetensorsFile::load(const std::string& name) const {
  const TensorEntry* e = find(name);
  if (!e) fail(path(), ": no tensor named '", name, "'");
  return load(*e);
}

torch::Tensor SafetensorsFile::load(const TensorEntry& entry) const {
  torch::Tensor out = torch::empty(entry.shape, dtype_from_safetensors(entry.dtype, path()));
  if (entry.end > entry.begin)
    std::memcpy(out.data_ptr(), map_.data() + data_start_ + entry.begin, entry.end - entry.begin);
  return out;
}

torch::Tensor SafetensorsFile::view(const TensorEntry& entry) const {
  torch::Dtype dtype = dtype_from_safetensors(entry.dtype, path());
  const uint8_t* p = map_.data() + data_start_ + entry.begin;
  if (entry.end == entry.begin || reinterpret_cast<uintptr_t>(p) % c10::elementSize(dtype) != 0) return load(entry);
  return torch::from_blob(const_cast<uint8_t*>(p), entry.shape, torch::TensorOptions().dtype(dtype));
}

void SafetensorsFile::read_range(const TensorEntry& entry, int64_t first, int64_t count, void* dst) const {
  const size_t elem = c10::elementSize(dtype_from_safetensors(entry.dtype, path()));
  if (first < 0 || count < 0 || entry.begin + static_cast<size_t>(first + count) * elem > entry.end)
    fail(path(), ": elements [", first, ", ", first + count, ") are outside tensor '", entry.name, "'");
  map_.read(data_start_ + entry.begin + static_cast<size_t>(first) * elem, static_cast<size_t>(count) * elem, dst);
}

std::string SafetensorsFile::checksum() const {
  constexpr size_t kBlock = 8u << 20;
  std::vector<uint8_t> block(kBlock);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (size_t at = 0; at < map_.size(); at += kBlock) {
    size_t n = std::min(kBlock, map_.size() - at);
    map_.read(at, n, block.data());
    XXH3_64bits_update(state, block.data(), n);
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(XXH3_64bits_digest(state)));
  XXH3_freeState(state);
  return hex;
}

NamedTensors SafetensorsFile::load_all() const {
  NamedTensors out;
  for (const auto& e : entries_) out.emplace_back(e.name, load(e));
  return out;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, const std::vector<TensorEntry>& layout,
                                     const Metadata& metadata)
    : layout_(layout) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  size_t offset = 0;
  for (auto& e : layout_) {
    if (!names.insert(e.name).second) fail(path, ": tensor '", e.name, "' given twice");
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    size_t bytes = static_cast<size_t>(numel) * c10::elementSize(dtype_from_safetensors(e.dtype, path));
    e.begin = offset;
    e.end = offset + bytes;
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep tensor data 8-byte aligned
  uint64_t header_bytes = text.size();
  file_ = std::make_unique<AtomicFile>(path);
  file_->write(&header_bytes, 8);
  file_->write(text);
}

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
  if (next_ >= layout_.size()) fail("safetensors writer: more data than the layout holds");
  const TensorEntry& e = layout_[next_];
  if (written_ + bytes > e.end - e.begin)
    fail("safetensors writer: ", written_ + bytes, " bytes for tensor '", e.name, "' of ", e.end - e.begin);
  file_->write(data, bytes);
  written_ += bytes;
  if (written_ == e.end - e.begin) ++next_, written_ = 0;
}

void SafetensorsWriter::commit() {
  while (next_ < layout_.size() && layout_[next_].end == layout_[next_].begin) ++next_;
  if (next_ != layout_.size()) fail("safetensors writer: ", layout_.size() - next_, " tensors were not written");
  file_->commit();
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  std::vector<TensorEntry> layout;
  for (const auto& [name, t] : tensors)
    layout.push_back({name, dtype_to_safetensors(t.scalar_type()), t.sizes().vec(), 0, 0});
  SafetensorsWriter writer(path, layout, metadata);
  for (const auto& [name, t] : tensors) writer.write(t);
  writer.commit();
}

}  // namespace lofi::io
