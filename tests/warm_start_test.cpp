// dist.warm_start_steps: the nodes of a lo-fi job first train as one data-parallel node (real
// worker processes over loopback), leave step K with one state, then train apart; a run resumed
// inside the warm start or after it takes the same steps.
#include <gtest/gtest.h>

#include <filesystem>

#include "lofi/io/safetensors.h"
#include "test_util.h"

namespace lofi {
namespace {

using test::last_metrics;
using test::max_abs_diff;
using test::run_lofi;

std::string train_cmd(const std::string& data, const std::string& run, const std::string& extra = "") {
  return "launch --workers 2 -- train " + test::tiny_train_flags(data, run) + " --set dist.nodes=2 " + extra;
}

int64_t ring(int64_t bytes, int64_t n) { return 2 * (n - 1) * bytes / n; }

TEST(DistWarmStart, NodesLeaveTogetherThenTrainApart) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto r = run_lofi(train_cmd(data, dir + "/warm", "--set dist.warm_start_steps=3 --set train.ckpt_every=2"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("train as one data-parallel node of 2 workers until step 3"), std::string::npos) << r.output;
  const std::string n0 = dir + "/warm/node-00", n1 = dir + "/warm/node-01";
  // Step 3 is checkpointed, and both nodes hold the same state there: weights and AdamW's moments.
  EXPECT_EQ(max_abs_diff(n0 + "/ckpt/step-000003.safetensors", n1 + "/ckpt/step-000003.safetensors"), 0.0);
  EXPECT_EQ(max_abs_diff(n0 + "/ckpt/step-000003.optim.safetensors", n1 + "/ckpt/step-000003.optim.safetensors"), 0.0);
  // Then each trains on its own data.
  EXPECT_GT(max_abs_diff(n0 + "/final.safetensors", n1 + "/final.safetensors"), 1e-4);
  // The warm steps' traffic crossed nodes: every gradient and the loss with the stop flag, all-reduced
  // between the two workers for 3 steps; nothing after.
  int64_t params = 0;
  const io::SafetensorsFile final_weights(n0 + "/final.safetensors");
  for (const auto& e : final_weights.entries()) params += static_cast<int64_t>((e.end - e.begin) / 4);
  const auto m = last_metrics(n0);
  EXPECT_EQ(m["bytes_between_nodes"].get<int64_t>(), 3 * (ring(4 * params, 2) + ring(8, 2)));
  EXPECT_EQ(m["bytes_within_node"].get<int64_t>(), 0);
  // Without the warm start the nodes part at step 1.
  auto apart = run_lofi(train_cmd(data, dir + "/apart", "--set train.ckpt_every=3"));
  ASSERT_EQ(apart.status, 0) << apart.output;
  EXPECT_GT(max_abs_diff(dir + "/apart/node-00/ckpt/step-000003.safetensors", dir + "/apart/node-01/ckpt/step-000003.safetensors"),
            1e-4);
}

// Cut the run after step CUT (its later checkpoints and finals removed) and resume: the same finals.
void expect_resume_at(int64_t cut) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string flags = "--set dist.warm_start_steps=3 --set train.ckpt_every=2";
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/full", flags)).status, 0);
  auto part = run_lofi(train_cmd(data, dir + "/part", flags));
  ASSERT_EQ(part.status, 0) << part.output;
  for (const std::string node : {"/part/node-00", "/part/node-01"}) {
    std::filesystem::remove(dir + node + "/final.safetensors");
    for (int64_t step : {2, 3, 4, 6}) {
      if (step <= cut) continue;
      char name[32];
      std::snprintf(name, sizeof(name), "/ckpt/step-%06lld", static_cast<long long>(step));
      std::filesystem::remove(dir + node + name + ".safetensors");
      std::filesystem::remove(dir + node + name + ".optim.safetensors");
    }
  }
  std::filesystem::remove(dir + "/part/merged.safetensors");
  auto resumed = run_lofi(train_cmd(data, dir + "/part", flags + " --resume"));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  // It went on from step CUT (logged every 2 steps and at the checkpoint of step 3), not from the start.
  EXPECT_EQ(resumed.output.find("step 2/6"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("step 6/6"), std::string::npos) << resumed.output;
  for (const std::string node : {"/node-00", "/node-01"})
    EXPECT_EQ(max_abs_diff(dir + "/full" + node + "/final.safetensors", dir + "/part" + node + "/final.safetensors"), 0.0) << node;
}

TEST(DistWarmStart, ResumedInsideTheWarmStartTakesTheSameSteps) { expect_resume_at(2); }
TEST(DistWarmStart, ResumedAfterTheSplitTakesTheSameSteps) { expect_resume_at(4); }

TEST(DistWarmStart, SettingsItCannotHonourAreOneLine) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  for (const auto& [flags, expected] : std::vector<std::pair<std::string, std::string>>{
           {"--set dist.nodes=1 --set dist.warm_start_steps=2", "dist.nodes = 1"},
           {"--set dist.nodes=2 --set dist.node_id=0 --set dist.warm_start_steps=2", "dist.node_id"},
           {"--set dist.nodes=2 --set dist.warm_start_steps=6", "must be below train.steps"},
           {"--set dist.nodes=2 --set dist.warm_start_steps=2 --set dist.shard=optimizer", "not built yet"},
           {"--set dist.nodes=2 --set dist.warm_start_steps=2 --set dist.sync_every=2 --set dist.outer_optimizer=nesterov",
            "nesterov"}}) {
    auto r = run_lofi("train " + test::tiny_train_flags(data, dir + "/run") + " " + flags);
    EXPECT_NE(r.status, 0) << flags;
    EXPECT_NE(r.output.find(expected), std::string::npos) << flags << ": " << r.output;
    EXPECT_NE(r.output.find("dist.warm_start_steps"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace lofi
