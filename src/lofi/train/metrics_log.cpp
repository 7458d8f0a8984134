#include "lofi/train/metrics_log.h"

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/tensorboard/event_writer.h"

namespace lofi::train {

std::string tensorboard_tag(const std::string& key) {
  if (key.rfind("val_", 0) == 0) return "val/" + key.substr(4);
  if (key.rfind("bytes_", 0) == 0) return "comm/" + key;
  return "train/" + key;
}

MetricsLog::MetricsLog(const run::NodeDir& node, int64_t resume_step, bool tensorboard) : path_(node.metrics()) {
  if (resume_step > 0) {
    std::ifstream in(path_);
    std::string line, kept;
    while (std::getline(in, line))
      if (auto record = nlohmann::json::parse(line, nullptr, false);
          record.is_object() && record.value("step", int64_t{0}) <= resume_step)
        kept += line + "\n";  // a torn last line from a killed run is dropped
    io::write_file_atomic(path_, kept);
  }
  out_.open(path_, resume_step > 0 ? std::ios::app : std::ios::trunc);
  if (!out_) fail(path_, ": cannot open for writing");
  if (tensorboard) events_ = std::make_unique<tensorboard::EventWriter>(node.path(), resume_step);
}

MetricsLog::~MetricsLog() = default;

void MetricsLog::write(const nlohmann::json& record) {
  out_ << record.dump() << "\n" << std::flush;
  if (!events_) return;
  std::vector<std::pair<std::string, double>> scalars;
  for (const auto& [key, value] : record.items())
    if (key != "step" && value.is_number()) scalars.emplace_back(tensorboard_tag(key), value.get<double>());
  events_->scalars(record.at("step").get<int64_t>(), scalars);
}

}  // namespace lofi::train
