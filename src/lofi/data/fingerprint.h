// What a run records of each data file it trains on, so a resume can tell that the data changed
// under it: the size, the modification time, and the XXH3 of the first 4 KiB and of 16 blocks of
// 64 KiB spread over the file (a few reads, whatever its size). Directories (image folders) are
// recorded by path alone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lofi::data {

struct FileFingerprint {
  std::string path;
  bool directory = false;
  int64_t bytes = 0;
  int64_t mtime_ns = 0;
  std::string xxh3;  // hex, of the sampled blocks
};

std::vector<FileFingerprint> fingerprint_files(const std::vector<std::string>& paths);

// As JSON text (a checkpoint's "lofi.data" metadata), and back; an empty or unreadable text gives
// no fingerprints (a checkpoint written before they were recorded).
std::string fingerprints_json(const std::vector<FileFingerprint>& prints);
std::vector<FileFingerprint> fingerprints_from_json(const std::string& text);

// The files of NOW whose size or sampled content differ from WAS (matched by path), each as
// "PATH (why)"; files only one side has are named too. A changed modification time alone (a copy)
// is not a change.
std::vector<std::string> changed_files(const std::vector<FileFingerprint>& was, const std::vector<FileFingerprint>& now);

}  // namespace lofi::data
