// TensorBoard event files: TFRecord framing with CRC-32C, read back by TensorBoard itself
// (fixtures/tensorboard/read_events.py), holding the same numbers as metrics.jsonl.
#include "lofi/tensorboard/event_writer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lofi/train/metrics_log.h"
#include "test_util.h"

namespace lofi::tensorboard {
namespace {

namespace fs = std::filesystem;

TEST(TensorBoardEvents, Crc32cIsCastagnoli) {
  // The check value of CRC-32C (RFC 3720, appendix B.4: iSCSI's polynomial).
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  EXPECT_EQ(masked_crc(0), 0xa282ead8u);
}

TEST(TensorBoardEvents, TagsGroupTheMetrics) {
  EXPECT_EQ(train::tensorboard_tag("loss"), "train/loss");
  EXPECT_EQ(train::tensorboard_tag("tokens_per_s"), "train/tokens_per_s");
  EXPECT_EQ(train::tensorboard_tag("val_loss"), "val/loss");
  EXPECT_EQ(train::tensorboard_tag("bytes_between_nodes"), "comm/bytes_between_nodes");
}

std::vector<fs::path> event_files(const std::string& dir) {
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) found.push_back(e.path());
  return found;
}

// A run interrupted after its step-3 checkpoint and resumed: TensorBoard shows each step once,
// with metrics.jsonl's numbers (as float32, TensorBoard's simple_value).
TEST(CliTensorBoard, TensorBoardReadsTheMetricsOfAResumedRun) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string run = dir + "/run";
  const std::string flags = "train " + test::tiny_train_flags(data, run) +
                            " --set train.log_every=1 --set train.ckpt_every=3 --set train.eval_every=3 --set data.val=" + data;
  auto first = test::run_lofi(flags);
  ASSERT_EQ(first.status, 0) << first.output;
  fs::remove(run + "/node-00/final.safetensors");
  fs::remove(run + "/node-00/ckpt/step-000006.safetensors");
  fs::remove(run + "/node-00/ckpt/step-000006.optim.safetensors");
  auto resumed = test::run_lofi(flags + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(event_files(run + "/node-00").size(), 2u);  // one per attempt

  auto read = test::run_python("tensorboard/read_events.py", run + "/node-00");
  ASSERT_EQ(read.status, 0) << read.output;
  const auto tb = nlohmann::json::parse(read.output.substr(read.output.rfind("\n{") + 1));
  EXPECT_GE(tb["records"].get<int>(), 2 + 6 + 1 + 3);  // versions, first attempt, START, resumed steps

  std::ifstream in(run + "/node-00/metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const auto record = nlohmann::json::parse(line);
    const int64_t step = record["step"];
    ++lines;
    for (const auto& [key, value] : record.items()) {
      if (key == "step" || !value.is_number()) continue;
      const std::string tag = train::tensorboard_tag(key);
      ASSERT_TRUE(tb.contains(tag)) << tag << " missing: " << read.output;
      int seen = 0;
      for (const auto& point : tb[tag])
        if (point[0] == step) {
          ++seen;
          EXPECT_EQ(point[1].get<float>(), static_cast<float>(value.get<double>())) << tag << " at step " << step;
        }
      EXPECT_EQ(seen, 1) << tag << " at step " << step;
    }
  }
  EXPECT_EQ(lines, 6);
  EXPECT_TRUE(tb.contains("val/loss")) << read.output;
  EXPECT_EQ(tb["train/loss"].size(), 6u) << read.output;
}

TEST(CliTensorBoard, CanBeTurnedOff) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto r = test::run_lofi("train " + test::tiny_train_flags(data, dir + "/run") + " --set train.tensorboard=false");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(event_files(dir + "/run/node-00").empty());
  EXPECT_TRUE(fs::exists(dir + "/run/node-00/metrics.jsonl"));
}

}  // namespace
}  // namespace lofi::tensorboard
