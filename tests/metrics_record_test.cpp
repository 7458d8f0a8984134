// metrics.jsonl's one schema: what the trainer writes reads back, and a run's traffic is computed
// from the nodes' last records.
#include "lofi/run/metrics_record.h"

#include <gtest/gtest.h>

#include <cmath>

namespace lofi::run {
namespace {

StepMetrics record(int64_t step, int64_t within, int64_t between, int64_t workers, double seconds) {
  StepMetrics m;
  m.step = step, m.loss = 2.5, m.grad_norm = 0.75, m.lr = 3e-4, m.unit = "images", m.units_seen = 640;
  m.seconds = seconds, m.units_per_s = 320;
  m.bytes_within_node = within, m.bytes_between_nodes = between, m.node_workers = workers;
  return m;
}

TEST(MetricsRecord, WhatIsWrittenReadsBack) {
  StepMetrics m = record(7, 1000, 24, 2, 1.5);
  m.skipped_nonfinite = 1;
  m.peak_memory_bytes = 1 << 20, m.start_peak_memory_bytes = 1 << 19;
  m.validation = {{"val_loss", 2.25}, {"val_top1", 0.5}};
  const nlohmann::json j = m.to_json();
  EXPECT_EQ(j["bytes_sent"], 1024);  // what each worker sent, within the node and between nodes
  EXPECT_EQ(j["images_per_s"], 320);
  const auto back = StepMetrics::from_json(j);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->to_json(), j);
  EXPECT_EQ(back->start_peak_memory_bytes, 1 << 19);
  // A diverged run logs NaN as null; a line without a step is not a record.
  nlohmann::json diverged = j;
  diverged["loss"] = nullptr;
  EXPECT_TRUE(std::isnan(StepMetrics::from_json(diverged)->loss));
  EXPECT_FALSE(StepMetrics::from_json(nlohmann::json{{"loss", 1.0}}).has_value());
}

TEST(MetricsRecord, TrafficCountsEveryWorkerOfEachNodeFromItsLastRecord) {
  // Node 0: 2 workers, its last record says 1000 within + 24 between each; node 1: one worker.
  const std::vector<std::vector<StepMetrics>> nodes{{record(5, 10, 1, 2, 0.5), record(10, 1000, 24, 2, 2.0)},
                                                     {record(10, 0, 24, 1, 3.0)}};
  const RunTraffic t = run_traffic(nodes);
  EXPECT_DOUBLE_EQ(t.total, 2 * 1024 + 24);
  EXPECT_DOUBLE_EQ(t.between_nodes, 2 * 24 + 24);
  EXPECT_DOUBLE_EQ(t.workers, 3);
  EXPECT_DOUBLE_EQ(t.seconds, 3.0);  // the slowest node
}

}  // namespace
}  // namespace lofi::run
