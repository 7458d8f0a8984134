#include "lofi/tensorboard/event_writer.h"

#include <isa-l/crc.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <atomic>
#include <climits>
#include "lofi/error.h"
#include "lofi/tensorboard/event.pb.h"

namespace lofi::tensorboard {
namespace {

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  // ISA-L takes the running CRC un-inverted: start from ~0 and invert at the end.
  uint32_t crc = 0xffffffffu;
  auto* bytes = static_cast<unsigned char*>(const_cast<void*>(data));
  while (size > 0) {
    const int chunk = static_cast<int>(std::min<size_t>(size, INT_MAX));
    crc = crc32_iscsi(bytes, chunk, crc);
    bytes += chunk, size -= static_cast<size_t>(chunk);
  }
  return crc ^ 0xffffffffu;
}

uint32_t masked_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

EventWriter::EventWriter(const std::string& dir, int64_t resume_step) {
  const double now = wall_time();
  static std::atomic<int> opened{0};  // a second writer of this process in the same second gets its own file
  const int n = opened++;
  path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." + host() + "." +
          std::to_string(::getpid()) + (n > 0 ? "." + std::to_string(n) : "") + ".lofi";
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_) fail(path_, ": cannot open the TensorBoard event file for writing");
  proto::Event version;
  version.set_wall_time(now);
  version.set_file_version("brain.Event:2");
  write_record(version.SerializeAsString());
  if (resume_step > 0) {
    proto::Event start;
    start.set_wall_time(now);
    start.set_step(resume_step + 1);  // TensorBoard drops what was logged at this step and later
    start.mutable_session_log()->set_status(proto::SessionLog::START);
    write_record(start.SerializeAsString());
  }
  out_.flush();
}

void EventWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  proto::Event event;
  event.set_wall_time(wall_time());
  event.set_step(step);
  for (const auto& [tag, value] : values) {
    auto* v = event.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  write_record(event.SerializeAsString());
  out_.flush();
  if (!out_) fail(path_, ": writing the TensorBoard event file failed (disk full?)");
}

void EventWriter::write_record(const std::string& data) {
  std::string record;
  std::string length;
  put_le(length, data.size(), 8);
  record += length;
  put_le(record, masked_crc(crc32c(length.data(), length.size())), 4);
  record += data;
  put_le(record, masked_crc(crc32c(data.data(), data.size())), 4);
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
}

}  // namespace lofi::tensorboard
