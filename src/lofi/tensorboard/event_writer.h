#pragma once
// TensorBoard event files: what `tensorboard --logdir RUN` and its event readers load.
// A file is a sequence of TFRecord records (length, masked CRC-32C of the length, an Event
// protobuf, masked CRC-32C of the data), named events.out.tfevents.<seconds>.<host>.<pid>.lofi.
// This layer has no LibTorch in it: it is built apart from the library (see CMakeLists.txt),
// because PyTorch's headers carry an older protobuf than the one the messages are compiled with.
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace lofi::tensorboard {

// CRC-32C (Castagnoli), as TFRecord uses it (Intel ISA-L computes it).
uint32_t crc32c(const void* data, size_t size);
// TFRecord's masking of a CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc(uint32_t crc);

class EventWriter {
 public:
  // Opens a new event file in `dir` (which must exist) and writes its version record. A run that
  // resumes after `resume_step` > 0 also writes SessionLog START at the next step, so TensorBoard
  // drops the scalars an earlier attempt logged past the checkpoint, as metrics.jsonl drops them.
  explicit EventWriter(const std::string& dir, int64_t resume_step = 0);
  const std::string& path() const { return path_; }
  // One Event at `step` with one scalar per (tag, value); flushed, so a killed run keeps it.
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);

 private:
  void write_record(const std::string& event_bytes);
  std::string path_;
  std::ofstream out_;
};

}  // namespace lofi::tensorboard
