// The safetensors container without the tensors: parses and validates the 8-byte length, the
// JSON header and the data layout of a file held in memory. No LibTorch here, so the parser can
// be fuzzed on its own (fuzz/); safetensors.h turns entries into tensors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lofi::io {

using Metadata = std::map<std::string, std::string>;

struct TensorEntry {
  std::string name;
  std::string dtype;            // safetensors spelling, e.g. "F32"
  std::vector<int64_t> shape;   // e.g. {768, 768}
  size_t begin = 0, end = 0;    // byte offsets into the data section
};

// The reference implementation (Rust `safetensors`) refuses longer headers as hostile.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Bytes per element of DTYPE as the format spells it ("BF16" -> 2); 0 when the format has no
// such dtype. Knows every byte-sized dtype of the format (U16, U32, U64, F8_*, C64 included).
size_t safetensors_dtype_size(const std::string& dtype);

// Parses and validates a header (the JSON text after the length) against a data section of
// DATA_BYTES bytes: every tensor has a known dtype, a shape whose byte size (overflow-checked)
// equals its data_offsets span, and the spans tile the data section from 0 to its end in order,
// without gaps or overlaps; names are unique; __metadata__ is a string-to-string map. Returns
// the tensors in data order; fills METADATA when given. SOURCE names the file in errors.
std::vector<TensorEntry> parse_safetensors_header(const std::string& json_text, size_t data_bytes,
                                                  Metadata* metadata, const std::string& source);

struct SafetensorsLayout {
  size_t data_start = 0;  // 8 + header length: where tensor bytes begin
  std::vector<TensorEntry> entries;
  Metadata metadata;
};

// Validates a whole file of SIZE bytes at BYTES (e.g. a memory map): the little-endian header
// length (bounded, inside the file), then the header as above against the rest of the file.
SafetensorsLayout parse_safetensors_file(const uint8_t* bytes, size_t size, const std::string& source);

}  // namespace lofi::io
