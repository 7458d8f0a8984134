// Where --resume continues from when nodes died at different points (real worker processes over
// loopback): nodes that meet during training (dist.sync_every, a shared warm start) restart from
// a step they all hold, even with train.keep_checkpoints = 1; a node that stopped before its first
// checkpoint starts again from step 0 while the others resume; a run.dir with nothing in it is
// named.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "test_util.h"

namespace lofi {
namespace {

namespace fs = std::filesystem;
using test::max_abs_diff;
using test::run_lofi;

std::string train_cmd(const std::string& data, const std::string& run, const std::string& extra) {
  return "launch --workers 2 -- train " + test::tiny_train_flags(data, run) + " --set dist.nodes=2 " + extra;
}

std::string ckpt(const std::string& node_dir, int64_t step) {
  char name[40];
  std::snprintf(name, sizeof(name), "/ckpt/step-%06lld", static_cast<long long>(step));
  return node_dir + name;
}

std::set<int64_t> checkpoint_steps(const std::string& node_dir) {
  std::set<int64_t> steps;
  for (const auto& e : fs::directory_iterator(node_dir + "/ckpt")) {
    const std::string name = e.path().filename().string();
    if (name.size() == 23 && name.rfind("step-", 0) == 0 && name.find(".optim") == std::string::npos)
      steps.insert(std::stoll(name.substr(5, 6)));
  }
  return steps;
}

// Removes NODE_DIR's checkpoint of STEP, as a node killed before it wrote it leaves the directory.
void remove_checkpoint(const std::string& node_dir, int64_t step) {
  fs::remove(ckpt(node_dir, step) + ".safetensors");
  fs::remove(ckpt(node_dir, step) + ".optim.safetensors");
}

// Runs FLAGS to the end in DIR/full and in DIR/part; CUT edits DIR/part's node directories (the
// results of the job removed first) before it resumes; the resumed run's finals are the full one's.
test::CommandResult expect_resumed_finals_equal(const std::string& dir, const std::string& flags,
                                                const std::function<void(const std::string&, const std::string&)>& cut) {
  const std::string data = test::write_corpus(dir, "general", 20000);
  auto full = run_lofi(train_cmd(data, dir + "/full", flags));
  EXPECT_EQ(full.status, 0) << full.output;
  auto part = run_lofi(train_cmd(data, dir + "/part", flags));
  EXPECT_EQ(part.status, 0) << part.output;
  const std::string n0 = dir + "/part/node-00", n1 = dir + "/part/node-01";
  for (const auto& node : {n0, n1}) fs::remove(node + "/final.safetensors");
  fs::remove(dir + "/part/merged.safetensors");
  cut(n0, n1);
  auto resumed = run_lofi(train_cmd(data, dir + "/part", flags + " --resume"));
  EXPECT_EQ(resumed.status, 0) << resumed.output;
  if (resumed.status == 0)
    for (const std::string node : {"/node-00", "/node-01"})
      EXPECT_EQ(max_abs_diff(dir + "/full" + node + "/final.safetensors", dir + "/part" + node + "/final.safetensors"), 0.0)
          << node;
  return resumed;
}

// Local SGD: with keep_checkpoints = 1 a node still holds the newest checkpoint before the last
// sync, which every node wrote before it: one killed before writing its newest resumes there with
// the others.
TEST(DistResume, SyncingNodesKeepOneStepInCommonWithKeepCheckpointsOne) {
  const std::string dir = test::scratch_dir();
  const std::string flags = "--set dist.sync_every=3 --set train.ckpt_every=1 --set train.keep_checkpoints=1";
  auto resumed = expect_resumed_finals_equal(dir, flags, [](const std::string& n0, const std::string& n1) {
    EXPECT_EQ(checkpoint_steps(n0), (std::set<int64_t>{5, 6}));
    EXPECT_EQ(checkpoint_steps(n1), (std::set<int64_t>{5, 6}));
    remove_checkpoint(n1, 6);
  });
  EXPECT_NE(resumed.output.find("node 0 continues from step 5, the newest step every node holds"), std::string::npos)
      << resumed.output;
}

// The newest step every node holds is found even when it is older than either node's newest and
// one node lacks the other's: node 0 holds 1-4, node 1 holds 1-3 and 5; both continue from 3.
TEST(DistResume, SyncingNodesAgreeOnTheNewestStepAllHold) {
  const std::string dir = test::scratch_dir();
  auto resumed = expect_resumed_finals_equal(dir, "--set dist.sync_every=3 --set train.ckpt_every=1",
                                             [](const std::string& n0, const std::string& n1) {
                                               for (int64_t step : {5, 6}) remove_checkpoint(n0, step);
                                               for (int64_t step : {4, 6}) remove_checkpoint(n1, step);
                                             });
  EXPECT_NE(resumed.output.find("node 0 continues from step 3"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("node 1 continues from step 3"), std::string::npos) << resumed.output;
  // The checkpoints past it, of steps trained again, moved aside: in ckpt/ they would count among
  // keep_checkpoints' newest.
  EXPECT_NE(resumed.output.find("moved node-00's checkpoints after step 3 (step 4) to"), std::string::npos) << resumed.output;
  EXPECT_TRUE(fs::exists(dir + "/part/node-00/retired/ckpt/step-000004.optim.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/part/node-01/retired/ckpt/step-000005.safetensors"));
}

// A node whose only checkpoint at or below the agreed step is damaged: no step in common, so all
// start over (not a refusal that leaves the job unresumable).
TEST(DistResume, ADamagedCheckpointBelowTheAgreementMeansNoStepInCommon) {
  const std::string dir = test::scratch_dir();
  auto resumed = expect_resumed_finals_equal(dir, "--set dist.sync_every=3 --set train.ckpt_every=3",
                                             [](const std::string& n0, const std::string& n1) {
                                               std::fstream f(ckpt(n0, 3) + ".safetensors", std::ios::in | std::ios::out | std::ios::binary);
                                               f.seekg(-5, std::ios::end);
                                               const char byte = static_cast<char>(f.get() ^ 0x20);
                                               f.seekp(-5, std::ios::end);
                                               f.put(byte);
                                               f.close();
                                               remove_checkpoint(n1, 6);
                                             });
  EXPECT_NE(resumed.output.find("checkpoint of step 3 is unusable"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("hold no checkpoint of one step in common"), std::string::npos) << resumed.output;
  EXPECT_EQ(resumed.output.find("continues from step 0"), std::string::npos) << resumed.output;
}

// A shared warm start: the checkpoint before its last step stays, since a node that died before
// writing the split's checkpoint takes every node back inside the warm start.
TEST(DistResume, WarmStartKeepsTheCheckpointBeforeTheSplit) {
  const std::string dir = test::scratch_dir();
  const std::string flags = "--set dist.warm_start_steps=3 --set train.ckpt_every=1 --set train.keep_checkpoints=1";
  auto resumed = expect_resumed_finals_equal(dir, flags, [](const std::string& n0, const std::string& n1) {
    EXPECT_EQ(checkpoint_steps(n0), (std::set<int64_t>{2, 6}));
    remove_checkpoint(n1, 6);
  });
  EXPECT_NE(resumed.output.find("node 0 continues from step 2"), std::string::npos) << resumed.output;
}

// Nodes that meet and hold no step in common (one damaged its only checkpoints): all start over.
TEST(DistResume, SyncingNodesWithNoStepInCommonStartOver) {
  const std::string dir = test::scratch_dir();
  auto resumed = expect_resumed_finals_equal(dir, "--set dist.sync_every=3 --set train.ckpt_every=3",
                                             [](const std::string&, const std::string& n1) { fs::remove_all(n1 + "/ckpt"); });
  EXPECT_NE(resumed.output.find("node 0 starts from step 0: the nodes, which meet during training, hold no checkpoint"),
            std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("step 2/6"), std::string::npos) << resumed.output;
}

// lo-fi nodes train apart: one that stopped before its first checkpoint starts from step 0, the
// other resumes from its own.
TEST(DistResume, ANodeWithNoCheckpointStartsOverAlone) {
  const std::string dir = test::scratch_dir();
  auto resumed = expect_resumed_finals_equal(dir, "--set train.ckpt_every=3", [](const std::string& n0, const std::string& n1) {
    remove_checkpoint(n0, 6);
    fs::remove_all(n1 + "/ckpt");
  });
  EXPECT_NE(resumed.output.find("node 1 starts from step 0: it has no checkpoint"), std::string::npos) << resumed.output;
  EXPECT_EQ(resumed.output.find("node 0 starts from step 0"), std::string::npos) << resumed.output;
}

// --resume into a directory that holds no earlier start: named, nothing made.
TEST(DistResume, NothingToResumeIsNamed) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto r = run_lofi("train " + test::tiny_train_flags(data, dir + "/typo") + " --resume");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--resume: nothing to resume in " + dir + "/typo: no node of it has a checkpoint"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(dir + "/typo/node-00"));
}

}  // namespace
}  // namespace lofi
