#include "lofi/data/chat_samples.h"

#include <cstring>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"

namespace lofi::data {
namespace {

constexpr size_t kHeaderWords = 16;
constexpr size_t kHeaderBytes = kHeaderWords * sizeof(int64_t);

size_t padded8(size_t bytes) { return (bytes + 7) / 8 * 8; }

}  // namespace

void write_chat_samples(const std::string& path, const std::vector<ChatSample>& samples) {
  int64_t tokens = 0, trained = 0;
  uint32_t largest = 0;
  for (const auto& s : samples) {
    if (s.ids.size() != s.mask.size()) fail(path, ": a sample's ids and mask differ in length");
    tokens += static_cast<int64_t>(s.ids.size());
    for (size_t t = 0; t < s.ids.size(); ++t) largest = std::max(largest, s.ids[t]), trained += s.mask[t] != 0;
  }
  const int width = largest <= 0xFFFF ? 2 : 4;
  int64_t header[kHeaderWords] = {kChatMagic, 1, width, tokens, static_cast<int64_t>(samples.size()), trained};
  io::AtomicFile file(path);
  file.write(header, sizeof(header));
  std::vector<uint8_t> ids;
  ids.reserve(padded8(static_cast<size_t>(tokens) * static_cast<size_t>(width)));
  for (const auto& s : samples)
    for (uint32_t id : s.ids) {
      const uint8_t* bytes = reinterpret_cast<const uint8_t*>(&id);  // little-endian: the low WIDTH bytes
      ids.insert(ids.end(), bytes, bytes + width);
    }
  ids.resize(padded8(ids.size()), 0);
  file.write(ids.data(), ids.size());
  std::vector<uint8_t> mask;
  mask.reserve(padded8(static_cast<size_t>(tokens)));
  for (const auto& s : samples)
    for (uint8_t m : s.mask) mask.push_back(m != 0);
  mask.resize(padded8(mask.size()), 0);
  file.write(mask.data(), mask.size());
  std::vector<int64_t> offsets{0};
  for (const auto& s : samples) offsets.push_back(offsets.back() + static_cast<int64_t>(s.ids.size()));
  file.write(offsets.data(), offsets.size() * sizeof(int64_t));
  file.commit();
}

bool is_chat_sample_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  int64_t magic = 0;
  const bool read = std::fread(&magic, sizeof(magic), 1, f) == 1;
  std::fclose(f);
  return read && magic == kChatMagic;
}

ChatSamples::ChatSamples(const std::vector<std::string>& paths, int64_t vocab_size) {
  if (paths.empty()) fail("no chat sample file given");
  for (const auto& path : paths) {
    File f;
    f.map = std::make_unique<io::MappedFile>(path);
    const uint8_t* bytes = f.map->data();
    const size_t size = f.map->size();
    int64_t h[kHeaderWords] = {};
    if (size >= kHeaderBytes) std::memcpy(h, bytes, kHeaderBytes);
    if (size < kHeaderBytes || h[0] != kChatMagic)
      fail(path, ": not a lofi chat sample file (no \"lofichat\" header); make one with `lofi prepare --chat`");
    if (h[1] != 1) fail(path, ": chat sample file version ", h[1], ", this lofi reads version 1; prepare it again");
    if (h[2] != 2 && h[2] != 4) fail(path, ": id width ", h[2], " bytes in the header, expected 2 or 4");
    const int64_t n = h[3], samples = h[4];
    if (n < 0 || samples < 0 || n > static_cast<int64_t>(size) || samples > static_cast<int64_t>(size))
      fail(path, ": header says ", n, " tokens and ", samples, " samples, more than a file of ", size, " bytes holds");
    f.width = static_cast<int>(h[2]);
    const size_t ids_bytes = padded8(static_cast<size_t>(n) * static_cast<size_t>(f.width));
    const size_t mask_bytes = padded8(static_cast<size_t>(n));
    const size_t need = kHeaderBytes + ids_bytes + mask_bytes + static_cast<size_t>(samples + 1) * sizeof(int64_t);
    if (size != need)
      fail(path, ": ", size, " bytes, but its header (", n, " tokens, ", samples, " samples) makes ", need,
           " bytes: a torn or damaged file; prepare it again");
    f.ids = bytes + kHeaderBytes;
    f.mask = f.ids + ids_bytes;
    f.offsets = reinterpret_cast<const int64_t*>(f.mask + mask_bytes);  // 8-byte aligned: a mapping starts on a page
    if (f.offsets[0] != 0 || f.offsets[samples] != n)
      fail(path, ": sample boundaries run from ", f.offsets[0], " to ", f.offsets[samples], ", expected 0 to ", n);
    for (int64_t s = 0; s < samples; ++s)
      if (f.offsets[s + 1] < f.offsets[s]) fail(path, ": sample ", s, "'s boundaries go backwards (", f.offsets[s], " then ", f.offsets[s + 1], ")");
    int64_t trained = 0;
    for (int64_t t = 0; t < n; ++t) {
      uint32_t id = 0;
      std::memcpy(&id, f.ids + t * f.width, static_cast<size_t>(f.width));
      if (id >= vocab_size) fail(path, ": token ", t, " has id ", id, ", outside the model's vocabulary of ", vocab_size);
      if (f.mask[t] > 1) fail(path, ": token ", t, "'s loss flag is ", int(f.mask[t]), ", expected 0 or 1");
      trained += f.mask[t];
    }
    if (trained != h[5]) fail(path, ": ", trained, " tokens are flagged for the loss, the header says ", h[5], ": a damaged file");
    const int32_t file = static_cast<int32_t>(files_.size());
    for (int64_t s = 0; s < samples; ++s) index_.emplace_back(file, s);
    tokens_ += n;
    trained_ += trained;
    files_.push_back(std::move(f));
  }
}

int64_t ChatSamples::length(int64_t sample) const {
  const auto& [file, s] = index_.at(static_cast<size_t>(sample));
  const File& f = files_[static_cast<size_t>(file)];
  return f.offsets[s + 1] - f.offsets[s];
}

void ChatSamples::copy(int64_t sample, int64_t* ids, uint8_t* mask) const {
  const auto& [file, s] = index_.at(static_cast<size_t>(sample));
  const File& f = files_[static_cast<size_t>(file)];
  for (int64_t t = f.offsets[s]; t < f.offsets[s + 1]; ++t) {
    uint32_t id = 0;
    std::memcpy(&id, f.ids + t * f.width, static_cast<size_t>(f.width));
    *ids++ = id;
    *mask++ = f.mask[t];
  }
}

}  // namespace lofi::data
