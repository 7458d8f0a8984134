#include "lofi/data/fingerprint.h"

#include <sys/stat.h>
#include <xxhash.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "lofi/error.h"
#include "lofi/io/mapped_file.h"

namespace lofi::data {
namespace {

constexpr size_t kHead = 4096, kBlock = 65536;
constexpr int kBlocks = 16;

std::string hex(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(v));
  return text;
}

}  // namespace

std::vector<FileFingerprint> fingerprint_files(const std::vector<std::string>& paths) {
  std::vector<FileFingerprint> out;
  for (const auto& path : paths) {
    FileFingerprint f;
    f.path = path;
    if (std::filesystem::is_directory(path)) {
      f.directory = true;
      out.push_back(f);
      continue;
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) fail(path, ": cannot read it to record the run's data");
    f.bytes = static_cast<int64_t>(st.st_size);
    f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    if (f.bytes > 0) {
      const io::MappedFile file(path);
      std::vector<uint8_t> buffer(kBlock);
      auto add = [&](size_t offset, size_t n) {
        n = std::min(n, file.size() - offset);
        file.read(offset, n, buffer.data());
        XXH3_64bits_update(state, buffer.data(), n);
      };
      add(0, kHead);
      const size_t span = file.size() > kBlock ? file.size() - kBlock : 0;
      for (int b = 0; b < kBlocks; ++b) add(span * static_cast<size_t>(b) / (kBlocks - 1), kBlock);
    }
    f.xxh3 = hex(XXH3_64bits_digest(state));
    XXH3_freeState(state);
    out.push_back(f);
  }
  return out;
}

std::string fingerprints_json(const std::vector<FileFingerprint>& prints) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& f : prints) {
    if (f.directory) j.push_back({{"path", f.path}, {"directory", true}});
    else j.push_back({{"path", f.path}, {"bytes", f.bytes}, {"mtime_ns", f.mtime_ns}, {"xxh3", f.xxh3}});
  }
  return j.dump();
}

std::vector<FileFingerprint> fingerprints_from_json(const std::string& text) {
  std::vector<FileFingerprint> out;
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (!e.is_object() || !e.contains("path")) continue;
    FileFingerprint f;
    f.path = e.value("path", "");
    f.directory = e.value("directory", false);
    f.bytes = e.value("bytes", int64_t{0});
    f.mtime_ns = e.value("mtime_ns", int64_t{0});
    f.xxh3 = e.value("xxh3", "");
    out.push_back(f);
  }
  return out;
}

std::vector<std::string> changed_files(const std::vector<FileFingerprint>& was, const std::vector<FileFingerprint>& now) {
  std::vector<std::string> changed;
  for (const auto& n : now) {
    const FileFingerprint* w = nullptr;
    for (const auto& candidate : was)
      if (candidate.path == n.path) w = &candidate;
    if (!w) {
      changed.push_back(cat(n.path, " (not among the files the run trained on)"));
    } else if (!n.directory && w->bytes != n.bytes) {
      changed.push_back(cat(n.path, " (", w->bytes, " bytes then, ", n.bytes, " now)"));
    } else if (!n.directory && w->xxh3 != n.xxh3) {
      changed.push_back(cat(n.path, " (same size, other content)"));
    }
  }
  for (const auto& w : was) {
    bool kept = false;
    for (const auto& n : now) kept |= n.path == w.path;
    if (!kept) changed.push_back(cat(w.path, " (trained on, no longer given)"));
  }
  return changed;
}

}  // namespace lofi::data
