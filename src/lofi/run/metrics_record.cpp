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
  if (optimizer_state_bytes) record["optimizer_state_bytes"] = *optimizer_state_bytes;
  if (gradient_bytes) record["gradient_bytes"] = *gradient_bytes;
  if (parameter_bytes) record["parameter_bytes"] = *parameter_bytes;
  if (peak_rss_bytes) record["peak_rss_bytes"] = *peak_rss_bytes;
  if (start_peak_memory_bytes) record["start_peak_memory_bytes"] = *start_peak_memory_bytes;
  if (start_peak_rss_bytes) record["start_peak_rss_bytes"] = *start_peak_rss_bytes;
  for (const auto& [key, value] : validation) record[key] = value;
  return record;
}

namespace {

double number_or(const nlohmann::json& j, const std::string& key, double fallback) {
  const auto it = j.find(key);
  if (it == j.end()) return fallback;
  return it->is_number() ? it->get<double>() : std::nan("");  // null: a NaN the writer could not spell
}

int64_t integer_or(const nlohmann::json& j, const std::string& key, int64_t fallback) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : fallback;
}

}  // namespace

std::optional<StepMetrics> StepMetrics::from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) return std::nullopt;
  StepMetrics m;
  m.step = j["step"].get<int64_t>();
  m.loss = number_or(j, "loss", std::nan("")), m.grad_norm = number_or(j, "grad_norm", std::nan(""));
  m.lr = number_or(j, "lr", std::nan(""));
  for (const char* unit : {"tokens", "images"})
    if (j.contains(unit)) m.unit = unit;
  m.units_seen = integer_or(j, m.unit, 0);
  m.seconds = number_or(j, "seconds", 0), m.units_per_s = number_or(j, m.unit + "_per_s", 0);
  m.bytes_between_nodes = integer_or(j, "bytes_between_nodes", 0);
  m.bytes_within_node = integer_or(j, "bytes_within_node", integer_or(j, "bytes_sent", 0) - m.bytes_between_nodes);
  m.node_workers = integer_or(j, "node_workers", 1);
  m.skipped_nonfinite = integer_or(j, "skipped_nonfinite", 0), m.diverged_at_step = integer_or(j, "diverged_at_step", 0);
  if (j.contains("peak_memory_bytes")) m.peak_memory_bytes = integer_or(j, "peak_memory_bytes", 0);
  if (j.contains("optimizer_state_bytes")) m.optimizer_state_bytes = integer_or(j, "optimizer_state_bytes", 0);
  if (j.contains("gradient_bytes")) m.gradient_bytes = integer_or(j, "gradient_bytes", 0);
  if (j.contains("parameter_bytes")) m.parameter_bytes = integer_or(j, "parameter_bytes", 0);
  if (j.contains("peak_rss_bytes")) m.peak_rss_bytes = integer_or(j, "peak_rss_bytes", 0);
  if (j.contains("start_peak_memory_bytes")) m.start_peak_memory_bytes = integer_or(j, "start_peak_memory_bytes", 0);
  if (j.contains("start_peak_rss_bytes")) m.start_peak_rss_bytes = integer_or(j, "start_peak_rss_bytes", 0);
  for (const auto& [key, value] : j.items())
    if (key.rfind("val_", 0) == 0) m.validation[key] = value.is_number() ? value.get<double>() : std::nan("");
  return m;
}

RunTraffic run_traffic(const std::vector<std::vector<StepMetrics>>& node_records) {
  RunTraffic t;
  for (const auto& records : node_records) {
    if (records.empty()) continue;
    const StepMetrics& last = records.back();
    const double workers = static_cast<double>(last.node_workers);
    t.workers += workers;
    t.total += static_cast<double>(last.bytes_within_node + last.bytes_between_nodes) * workers;
    t.between_nodes += static_cast<double>(last.bytes_between_nodes) * workers;
    t.seconds = std::max(t.seconds, last.seconds);
  }
  return t;
}

RunTraffic run_traffic(const RunDir& run) {
  std::vector<std::vector<StepMetrics>> nodes;
  for (int64_t k = 0; std::filesystem::exists(run.node(k).path()); ++k) {
    nodes.push_back(read_metrics(run.node(k).metrics()));
    if (nodes.back().empty()) fail(run.path(), ": node ", k, " wrote no metrics");
  }
  return run_traffic(nodes);
}

std::vector<StepMetrics> read_metrics(const std::string& path) {
  std::vector<StepMetrics> records;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (auto m = StepMetrics::from_json(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false))) records.push_back(*m);
  }
  return records;
}

}  // namespace lofi::run
