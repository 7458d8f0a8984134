// File checksums for provenance: XXH3-64 (libxxhash), fast enough to run over multi-GB
// checkpoints at memory bandwidth; `xxhsum -H3 FILE` prints the same value.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lofi::io {

// XXH3-64 of BYTES as 16 lowercase hex digits.
std::string xxh3_hex(const void* data, size_t bytes);

}  // namespace lofi::io
