// libFuzzer target for the safetensors container parser (src/lofi/io/safetensors_header.cpp),
// built with clang under ASan and UBSan by fuzz/CMakeLists.txt; no LibTorch. Bad input must end
// in lofi::Error; anything else (a crash, another exception, a wrong layout accepted) is a find.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "lofi/error.h"
#include "lofi/io/safetensors_header.h"

namespace {

// Checks what parse_safetensors_header promises of every layout it accepts, so that a validation
// hole shows up as a crash rather than passing silently.
void check_layout(const std::vector<lofi::io::TensorEntry>& entries, size_t data_bytes) {
  size_t cursor = 0;
  for (const auto& e : entries) {
    uint64_t bytes = lofi::io::safetensors_dtype_size(e.dtype);
    if (bytes == 0) std::abort();  // an unknown dtype let through
    for (int64_t d : e.shape) {
      if (d < 0 || (d != 0 && bytes > UINT64_MAX / static_cast<uint64_t>(d))) std::abort();
      bytes *= static_cast<uint64_t>(d);
    }
    if (e.begin != cursor || e.end < e.begin || e.end - e.begin != bytes) std::abort();
    cursor = e.end;
  }
  if (cursor != data_bytes) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // As a whole file: length prefix, header, data section.
  try {
    lofi::io::SafetensorsLayout layout = lofi::io::parse_safetensors_file(data, size, "fuzz");
    if (layout.data_start < 8 || layout.data_start > size) std::abort();
    check_layout(layout.entries, size - layout.data_start);
  } catch (const lofi::Error&) {
  }
  // As a bare header against a 64-byte data section (the seed headers' size), so mutations can
  // grow and shrink the JSON without having to fix up a length prefix.
  constexpr size_t kDataBytes = 64;
  try {
    lofi::io::Metadata metadata;
    auto entries = lofi::io::parse_safetensors_header(std::string(reinterpret_cast<const char*>(data), size),
                                                      kDataBytes, &metadata, "fuzz");
    check_layout(entries, kDataBytes);
  } catch (const lofi::Error&) {
  }
  return 0;
}
