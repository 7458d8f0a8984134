// lofi's chat sample file: what `lofi prepare --chat` writes and training and evaluation read.
// Samples of token ids, each token with a loss flag (1: a training target, e.g. the assistant's
// tokens), and the samples' boundaries. Little-endian, memory-mapped at open, where everything
// is checked: header, size, boundaries, flags, ids against the vocabulary.
//   header   16 int64: magic kChatMagic ("lofichat"), version 1, id width in bytes (2 or 4),
//            tokens N, samples S, trained tokens, then zeros
//   ids      N ids of `width` bytes each, zero-padded to a multiple of 8 bytes
//   mask     N bytes, 1 where the token's loss counts, 0 where not; zero-padded to a multiple of 8
//   offsets  S + 1 int64: sample s is tokens [offsets[s], offsets[s + 1]); offsets[0] = 0, offsets[S] = N
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lofi/io/mapped_file.h"

namespace lofi::data {

inline constexpr int64_t kChatMagic = 0x7461686369666f6c;  // "lofichat" in little-endian bytes
inline constexpr const char* kChatExtension = ".chat";

// One sample's tokens and loss flags, as prepared.
struct ChatSample {
  std::vector<uint32_t> ids;
  std::vector<uint8_t> mask;  // 1: ids[t] is a training target
};

// Writes SAMPLES atomically (uint16 ids when every id fits, else uint32).
void write_chat_samples(const std::string& path, const std::vector<ChatSample>& samples);

// Whether PATH starts with the chat sample file's magic (the name need not end in .chat).
bool is_chat_sample_file(const std::string& path);

class ChatSamples {
 public:
  // PATHS in order, read as one list of samples; ids must be < VOCAB_SIZE. Throws naming the file.
  ChatSamples(const std::vector<std::string>& paths, int64_t vocab_size);

  int64_t size() const { return static_cast<int64_t>(index_.size()); }  // samples
  int64_t length(int64_t sample) const;                                   // its tokens
  int64_t tokens() const { return tokens_; }
  int64_t trained_tokens() const { return trained_; }
  // Copies sample SAMPLE's ids and loss flags into IDS and MASK (LENGTH(sample) each).
  void copy(int64_t sample, int64_t* ids, uint8_t* mask) const;

 private:
  struct File {
    std::unique_ptr<io::MappedFile> map;
    int width = 2;
    const uint8_t* ids = nullptr;
    const uint8_t* mask = nullptr;
    const int64_t* offsets = nullptr;
  };
  std::vector<File> files_;
  std::vector<std::pair<int32_t, int64_t>> index_;  // sample -> (file, sample in file)
  int64_t tokens_ = 0, trained_ = 0;
};

}  // namespace lofi::data
