#include "lofi/io/checksum.h"

#include <xxhash.h>

#include <cstdio>

namespace lofi::io {

std::string xxh3_hex(const void* data, size_t bytes) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(XXH3_64bits(data, bytes)));
  return hex;
}

}  // namespace lofi::io
