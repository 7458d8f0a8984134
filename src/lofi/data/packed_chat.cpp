#include "lofi/data/packed_chat.h"

#include <algorithm>
#include <cmath>

#include "lofi/error.h"

namespace lofi::data {
namespace {

// First-fit over rows of CAPACITY: a tree of each subtree's largest free room finds the first
// row with room for a sample in log time (a scan of every open row would be quadratic).
class FirstFit {
 public:
  FirstFit(int64_t rows, int64_t capacity) : leaves_(1) {
    while (leaves_ < rows) leaves_ *= 2;
    room_.assign(static_cast<size_t>(2 * leaves_), capacity);
  }
  // The first row with at least LENGTH free, which then holds LENGTH less.
  int64_t place(int64_t length) {
    size_t node = 1;
    while (node < static_cast<size_t>(leaves_)) node = room_[2 * node] >= length ? 2 * node : 2 * node + 1;
    const int64_t row = static_cast<int64_t>(node) - leaves_;
    room_[node] -= length;
    for (node /= 2; node >= 1; node /= 2) room_[node] = std::max(room_[2 * node], room_[2 * node + 1]);
    return row;
  }

 private:
  int64_t leaves_;
  std::vector<int64_t> room_;
};

}  // namespace

PackedChat::PackedChat(const ChatSamples& samples, int64_t seq_len, bool packing, const std::string& overlong,
                       const std::string& source, const std::string& window)
    : samples_(samples), seq_len_(seq_len), packing_(packing), overlong_mode_(overlong) {
  if (overlong != "truncate" && overlong != "drop") fail("data.overlong must be \"truncate\" or \"drop\", found \"", overlong, "\"");
  const int64_t n = samples.size();
  kept_length_.assign(static_cast<size_t>(n), 0);
  std::vector<int64_t> ids;
  std::vector<uint8_t> mask;
  std::vector<int64_t> sample_targets(static_cast<size_t>(n), 0);
  for (int64_t s = 0; s < n; ++s) {
    const int64_t length = samples.length(s);
    if (length < 2) {  // nothing to predict
      ++untrained_;
      continue;
    }
    if (length > seq_len) {
      ++overlong_;
      if (overlong == "drop") continue;
    }
    const int64_t kept = std::min(length, seq_len);
    ids.resize(static_cast<size_t>(length));
    mask.resize(static_cast<size_t>(length));
    samples.copy(s, ids.data(), mask.data());
    const int64_t targets = std::count(mask.begin() + 1, mask.begin() + std::max<int64_t>(kept, 1), 1);
    if (targets == 0) {
      ++untrained_;
      continue;
    }
    kept_length_[static_cast<size_t>(s)] = kept;
    sample_targets[static_cast<size_t>(s)] = targets;
  }
  FirstFit fit(std::max<int64_t>(n, 1), packing ? seq_len : 1);
  for (int64_t s = 0; s < n; ++s) {
    const int64_t kept = kept_length_[static_cast<size_t>(s)];
    if (kept == 0) continue;
    const int64_t row = fit.place(packing ? kept : 1);
    if (row >= rows()) rows_.resize(static_cast<size_t>(row + 1)), row_targets_.resize(static_cast<size_t>(row + 1), 0);
    rows_[static_cast<size_t>(row)].push_back(s);
    row_targets_[static_cast<size_t>(row)] += sample_targets[static_cast<size_t>(s)];
    ++used_samples_;
    tokens_ += kept;
  }
  if (rows_.empty())
    fail(source, ": no sample is left to ", window == "data.seq_len" ? "train on" : "score", " (", n, " samples: ", overlong_,
         " longer than ", window, " ", seq_len, ", ", untrained_, " without a trained token within it)");
}

ChatBatch PackedChat::batch(const std::vector<int64_t>& rows) const {
  const int64_t B = static_cast<int64_t>(rows.size()), T = seq_len_;
  ChatBatch b;
  b.tokens = torch::zeros({B, T}, torch::kLong);
  b.targets = torch::full({B, T}, -100, torch::kLong);
  b.segments = torch::full({B, T}, -1, torch::kLong);
  auto tokens = b.tokens.accessor<int64_t, 2>();
  auto targets = b.targets.accessor<int64_t, 2>();
  auto segments = b.segments.accessor<int64_t, 2>();
  std::vector<int64_t> ids;
  std::vector<uint8_t> mask;
  for (int64_t r = 0; r < B; ++r) {
    int64_t at = 0, k = 0;
    for (int64_t s : rows_.at(static_cast<size_t>(rows[static_cast<size_t>(r)]))) {
      const int64_t kept = kept_length_[static_cast<size_t>(s)];
      ids.resize(static_cast<size_t>(samples_.length(s)));
      mask.resize(ids.size());
      samples_.copy(s, ids.data(), mask.data());
      for (int64_t t = 0; t < kept; ++t) {
        tokens[r][at + t] = ids[static_cast<size_t>(t)];
        segments[r][at + t] = k;
        if (t + 1 < kept && mask[static_cast<size_t>(t + 1)]) targets[r][at + t] = ids[static_cast<size_t>(t + 1)], ++b.targets_kept;
      }
      at += kept, ++k;
    }
  }
  return b;
}

std::string PackedChat::summary() const {
  const double filled = static_cast<double>(tokens_) / static_cast<double>(rows() * seq_len_);
  std::string line = cat(used_samples_, " samples ", packing_ ? "packed into " : "padded to ", rows(), " rows of ", seq_len_,
                         " tokens (", std::lround(100 * filled), "% filled)");
  if (overlong_ > 0)
    line += cat("; ", overlong_, " longer than ", seq_len_, " tokens ", overlong_mode_ == "drop" ? "dropped" : "truncated",
                " (data.overlong)");
  if (untrained_ > 0) line += cat("; ", untrained_, " without a trained token within ", seq_len_, " tokens left out");
  return line;
}

}  // namespace lofi::data
