// Chat samples (chat_samples.h) laid out in training rows of data.seq_len tokens: packed
// first-fit (each sample, in file order, into the first row with room for it) or one per row
// (padded; data.packing = false). A sample longer than a row is truncated to it or dropped
// (data.overlong), and so is one left without a trained target: counted in summary(), never
// silently. In a row, sample k's token t predicts its token t + 1 where that token is flagged for
// the loss; nothing predicts across samples, and padding predicts nothing.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "lofi/data/chat_samples.h"

namespace lofi::data {

struct ChatBatch {
  torch::Tensor tokens;    // (B, T) int64; padding 0
  torch::Tensor targets;   // (B, T) int64; -100 where no loss is taken
  torch::Tensor segments;  // (B, T) int64: the sample's number in its row; -1 for padding
  int64_t targets_kept = 0;
};

class PackedChat {
 public:
  // OVERLONG: "truncate" or "drop". SOURCE names the data in messages, WINDOW the setting that
  // gave SEQ_LEN ("data.seq_len" in training, "--seq-len" in eval).
  PackedChat(const ChatSamples& samples, int64_t seq_len, bool packing, const std::string& overlong, const std::string& source,
             const std::string& window = "data.seq_len");

  int64_t rows() const { return static_cast<int64_t>(rows_.size()); }
  int64_t targets(int64_t row) const { return row_targets_[static_cast<size_t>(row)]; }  // trained targets in ROW
  bool packed() const { return packing_; }
  ChatBatch batch(const std::vector<int64_t>& rows) const;
  // e.g. "1200 samples packed into 301 rows of 512 tokens (94% filled); 3 longer than 512 truncated"
  std::string summary() const;
  int64_t overlong() const { return overlong_; }    // samples longer than a row (truncated or dropped)
  int64_t untrained() const { return untrained_; }  // samples left out: no trained token within a row

 private:
  const ChatSamples& samples_;
  int64_t seq_len_;
  bool packing_;
  std::vector<std::vector<int64_t>> rows_;  // row -> its samples
  std::vector<int64_t> kept_length_;         // sample -> its tokens in a row (after truncation)
  std::vector<int64_t> row_targets_;
  int64_t used_samples_ = 0, overlong_ = 0, untrained_ = 0, tokens_ = 0;
  std::string overlong_mode_;
};

}  // namespace lofi::data
