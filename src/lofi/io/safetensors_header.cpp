// Validation follows the reference implementation (Rust `safetensors`, tensor.rs): bounded
// header length, UTF-8 JSON, known dtypes, checked shape arithmetic, data_offsets tiling the data
// section exactly. Stricter where nlohmann::json would silently differ: duplicate keys (it keeps
// the last) are errors, and nesting is bounded so hostile headers cannot exhaust the stack.
#include "lofi/io/safetensors_header.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "lofi/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors lengths and data are little-endian");

namespace lofi::io {
namespace {

using nlohmann::json;

// A valid header nests three levels (header -> tensor -> shape); unknown fields may nest deeper,
// but no honest file needs this many.
constexpr int kMaxDepth = 32;

struct DtypeSize {
  const char* name;
  size_t bytes;
};
constexpr DtypeSize kDtypeSizes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"I16", 2}, {"U16", 2},
    {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4},     {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8},
    {"C64", 8},
};

// TEXT made safe for a one-line message: bytes outside printable ASCII become \xNN, and long
// text is cut (a hostile header can hold megabytes in one string).
std::string printable(const std::string& text, size_t max = 120) {
  std::string out;
  for (size_t i = 0; i < text.size() && out.size() < max; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
  }
  if (out.size() >= max) out += "...";
  return out;
}

std::string printable(const json& value) { return printable(value.dump(-1, ' ', false, json::error_handler_t::replace)); }

// Parses TEXT into a DOM, rejecting duplicate keys in any object and nesting past kMaxDepth.
json parse_strict(const std::string& text, const std::string& source) {
  // nlohmann stops at a NUL as at the end of input and would ignore whatever follows it; JSON
  // allows NUL nowhere (inside strings it must be escaped), and the reference rejects it.
  if (size_t nul = text.find('\0'); nul != std::string::npos)
    fail(source, ": safetensors header is not valid UTF-8 JSON (NUL byte at header offset ", nul, ")");
  std::vector<std::set<std::string>> open;  // keys seen, one set per open object or array
  json::parser_callback_t on_event = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (open.size() >= kMaxDepth) fail(source, ": safetensors header nests deeper than ", kMaxDepth, " levels");
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        open.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open.back().insert(parsed.get<std::string>()).second)
          fail(source, open.size() == 1 ? ": tensor '" : ": key '", printable(parsed.get<std::string>()),
               open.size() == 1 ? "' appears twice in the header" : "' appears twice in one object of the header");
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, on_event);
  } catch (const json::exception& e) {
    // nlohmann reports invalid UTF-8 inside strings and bytes outside them as parse errors.
    fail(source, ": safetensors header is not valid UTF-8 JSON (", printable(e.what(), 200), ")");
  }
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;
}

// One tensor's header object, validated on its own; offsets are checked against each other later.
TensorEntry parse_entry(const std::string& name, const json& value, size_t data_bytes, const std::string& source) {
  const std::string where = cat(source, ": tensor '", printable(name), "'");
  if (!value.is_object()) fail(where, " must be an object of dtype, shape and data_offsets, found ", printable(value));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!value.contains(field)) fail(where, " has no '", field, "'");
  const json& dtype = value["dtype"];
  if (!dtype.is_string()) fail(where, ": dtype must be a string, found ", printable(dtype));
  TensorEntry entry;
  entry.name = name;
  entry.dtype = dtype.get<std::string>();
  const size_t elem = safetensors_dtype_size(entry.dtype);
  if (elem == 0)
    fail(where, ": unknown dtype '", printable(entry.dtype),
         "' (expected BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2, F8_E8M0 or C64)");

  const json& shape = value["shape"];
  if (!shape.is_array()) fail(where, ": shape must be an array, found ", printable(shape));
  // Checked in order, like the reference: any partial product past int64 is an error, even when
  // a later dimension is 0, so no consumer's element count can overflow.
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t numel = 1;
  for (const json& dim : shape) {
    if (!dim.is_number_unsigned())
      fail(where, ": shape ", printable(shape), " holds ", printable(dim), ", expected non-negative integers");
    const uint64_t d = dim.get<uint64_t>();
    if (d > kMax || (d != 0 && numel > kMax / d)) fail(where, ": shape ", printable(shape), " overflows 64-bit sizes");
    numel *= d;
    entry.shape.push_back(static_cast<int64_t>(d));
  }
  if (numel > kMax / elem) fail(where, ": shape ", printable(shape), " x ", entry.dtype, " overflows 64-bit sizes");

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    fail(where, ": data_offsets must be two non-negative integers, found ", printable(offsets));
  const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
  if (begin > end) fail(where, ": data_offsets [", begin, ", ", end, "] run backwards");
  if (end > data_bytes)
    fail(where, ": data_offsets end ", end, " is past the data section (", data_bytes, " bytes); file truncated?");
  if (numel * elem != end - begin)
    fail(where, ": shape ", printable(shape), " x ", entry.dtype, " is ", numel * elem, " bytes, but data_offsets [",
         begin, ", ", end, "] hold ", end - begin);
  entry.begin = begin;
  entry.end = end;
  return entry;
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  for (const auto& d : kDtypeSizes)
    if (dtype == d.name) return d.bytes;
  return 0;
}

std::vector<TensorEntry> parse_safetensors_header(const std::string& json_text, size_t data_bytes,
                                                  Metadata* metadata, const std::string& source) {
  const json header = parse_strict(json_text, source);
  if (!header.is_object()) fail(source, ": safetensors header must be a JSON object, found ", printable(header));

  std::vector<TensorEntry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(source, ": __metadata__ must be an object of strings, found ", printable(*it));
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          fail(source, ": __metadata__ value '", printable(m.key()), "' must be a string, found ", printable(*m));
        if (metadata) (*metadata)[m.key()] = m->get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(it.key(), *it, data_bytes, source));
  }

  // The data section must be covered exactly once, in order: no gaps, no overlaps. Header order
  // is free (the reference sorts by offset too), so sort, and hand back tensors in data order.
  std::stable_sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  size_t cursor = 0;
  for (const TensorEntry& e : entries) {
    if (e.begin != cursor)
      fail(source, ": tensor '", printable(e.name), "' starts at byte ", e.begin, ", expected ", cursor,
           e.begin < cursor ? " (overlaps the tensor before it)" : " (gap in the data section)");
    cursor = e.end;
  }
  if (cursor != data_bytes)
    fail(source, ": tensors cover ", cursor, " of ", data_bytes, " data bytes (trailing bytes after the last tensor)");
  return entries;
}

SafetensorsLayout parse_safetensors_file(const uint8_t* bytes, size_t size, const std::string& source) {
  if (size < 8)
    fail(source, ": not a safetensors file (", size, " bytes, shorter than the 8-byte header length)");
  const uint64_t header_bytes = read_u64_le(bytes);
  if (header_bytes > kMaxSafetensorsHeaderBytes)
    fail(source, ": header length ", header_bytes, " is over the ", kMaxSafetensorsHeaderBytes,
         "-byte limit (not a safetensors file?)");
  if (header_bytes > size - 8)
    fail(source, ": header length ", header_bytes, " runs past the end of the file (", size,
         " bytes); truncated or not a safetensors file");
  SafetensorsLayout layout;
  layout.data_start = 8 + static_cast<size_t>(header_bytes);
  const std::string text(reinterpret_cast<const char*>(bytes + 8), static_cast<size_t>(header_bytes));
  layout.entries = parse_safetensors_header(text, size - layout.data_start, &layout.metadata, source);
  return layout;
}

}  // namespace lofi::io
