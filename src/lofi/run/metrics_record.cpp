#include "lofi/run/metrics_record.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "lofi/error.h"

namespace lofi::run {

nlohmann::json StepMetrics::to_json() const {
  nlohmann::json record{{"step", step}, {"loss", loss}, {"grad_norm", grad_norm}, {"lr", lr}, {unit, units_seen},
                        {"seconds", seconds}, {unit + "_per_s", units_per_s},
                        {"bytes_sent", bytes_within_node + bytes_between_nodes},
                        {"bytes_within_node", bytes_within_node},
                        {"bytes_between_nodes", bytes_between_nodes}, {"node_workers", node_workers}};
  if (skipped_nonfinite > 0) record["skipped_nonfinite"] = skipped_nonfinite;
  if (diverged_at_step > 0) record["diverged_at_step"] = diverged_at_step;
  if (peak_memory_bytes) record["peak_memory_bytes"] = *peak_memory_bytes;
  for (const auto& [key, value] : validation) record[key] = value;
  return record;
}

RunTraffic run_traffic(const std::vector<std::vector<nlohmann::json>>& node_records) {
  RunTraffic t;
  for (const auto& records : node_records) {
    // The last record that has KEY (a run's final lines may be of another kind); FALLBACK if none.
    auto last = [&](const char* key, double fallback) {
      for (auto it = records.rbegin(); it != records.rend(); ++it)
        if (auto v = it->find(key); v != it->end() && v->is_number() && std::isfinite(v->get<double>())) return v->get<double>();
      return fallback;
    };
    const double workers = last("node_workers", 1.0);
    t.workers += workers;
    t.total += last("bytes_sent", 0) * workers;
    t.between_nodes += last("bytes_between_nodes", 0) * workers;
    t.seconds = std::max(t.seconds, last("seconds", 0));
  }
  return t;
}

RunTraffic run_traffic(const RunDir& run) {
  std::vector<std::vector<nlohmann::json>> nodes;
  for (int64_t k = 0; std::filesystem::exists(run.node(k).path()); ++k) {
    nodes.push_back(read_metrics(run.node(k).metrics()));
    if (nodes.back().empty()) fail(run.path(), ": node ", k, " wrote no metrics");
  }
  return run_traffic(nodes);
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_object()) records.push_back(std::move(record));
  }
  return records;
}

}  // namespace lofi::run
