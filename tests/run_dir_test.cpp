// The run directory's layout, in one place (run/run_dir.h): its paths, the nodes and checkpoints
// found in it, and the values read from its config.
#include "lofi/run/run_dir.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "lofi/io/atomic_file.h"
#include "lofi/io/temporaries.h"
#include "test_util.h"

namespace lofi::run {
namespace {

namespace fs = std::filesystem;

void touch(const std::string& path) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << "x";
}

TEST(RunDir, SpellsTheLayout) {
  const RunDir run("/r");
  EXPECT_EQ(run.node(3).path(), "/r/node-03");
  EXPECT_EQ(run.node(3).name(), "node-03");
  EXPECT_EQ(run.node(123).name(), "node-123");
  EXPECT_EQ(run.node(0).final_weights(), "/r/node-00/final.safetensors");
  EXPECT_EQ(run.node(0).checkpoint(500).weights, "/r/node-00/ckpt/step-000500.safetensors");
  EXPECT_EQ(run.node(0).checkpoint(500).optimizer, "/r/node-00/ckpt/step-000500.optim.safetensors");
  EXPECT_EQ(run.node(0).checkpoint(500).optimizer_shard(2, 4), "/r/node-00/ckpt/step-000500.optim-00002-of-00004.safetensors");
  EXPECT_EQ(run.merged(), "/r/merged.safetensors");
  EXPECT_EQ(run.config(), "/r/config.toml");
}

TEST(RunDir, NodeIdsOfNames) {
  EXPECT_EQ(node_id_of("node-07"), 7);
  EXPECT_EQ(node_id_of("node-123"), 123);
  EXPECT_FALSE(node_id_of("node-"));
  EXPECT_FALSE(node_id_of("node-1a"));
  EXPECT_FALSE(node_id_of("nodes-1"));
  EXPECT_FALSE(node_id_of("node-99999999999999999999"));  // no overflow: refused
}

TEST(RunDir, FindsNodesAndCheckpoints) {
  const std::string dir = test::scratch_dir();
  const RunDir run(dir);
  EXPECT_TRUE(run.node_ids().empty());
  EXPECT_FALSE(is_run_dir(dir));
  touch(run.node(2).metrics());
  touch(run.node(0).metrics());
  touch(dir + "/node-x/metrics.jsonl");  // not a node
  touch(dir + "/node-05");               // a file, not a node directory
  EXPECT_EQ(run.node_ids(), (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(is_run_dir(dir));

  const NodeDir node = run.node(0);
  EXPECT_FALSE(node.latest_checkpoint());
  touch(node.checkpoint(20).weights);
  touch(node.checkpoint(20).optimizer);
  touch(node.checkpoint(100).weights);
  touch(node.checkpoint(100).optimizer);
  touch(node.checkpoint(300).optimizer);  // no weights file: incomplete, not listed
  touch(node.checkpoint_dir() + "/step-000400.safetensors.tmp-1");
  const auto all = node.checkpoints();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].step, 20);  // in step order, not name or directory order
  EXPECT_EQ(all[1].step, 100);
  EXPECT_EQ(node.latest_checkpoint()->step, 100);
}

TEST(RunDir, ReadsItsConfig) {
  const std::string dir = test::scratch_dir();
  const RunDir run(dir);
  EXPECT_EQ(run.config_value("dist.nodes"), std::nullopt);  // no config
  // A dist.node_id job keeps its config in its node directory.
  io::make_dirs(run.node(1).path());
  io::write_file_atomic(run.node(1).config(), "[dist]\nnodes = 4\n[model]\narch = \"gpt2\"\n");
  EXPECT_EQ(run.config_value("dist.nodes"), "4");
  EXPECT_EQ(run.config_value("model.arch"), "gpt2");
  EXPECT_EQ(run.expected_node_ids(), (std::vector<int64_t>{0, 1, 2, 3}));
  // The whole job's config at the root comes first.
  io::write_file_atomic(run.config(), "[dist]\nnodes = 2\n");
  EXPECT_EQ(run.config_value("dist.nodes"), "2");
  EXPECT_EQ(run.config_value("model.arch"), "");
  EXPECT_EQ(run.expected_node_ids(), (std::vector<int64_t>{0, 1}));
  io::write_file_atomic(run.config(), "[dist\nnodes = 2\n");  // does not parse: answers nothing
  EXPECT_EQ(run.config_value("dist.nodes"), std::nullopt);
}

TEST(RunDir, LockRefusesASecondHolder) {
  const std::string dir = test::scratch_dir();
  const NodeDir node = RunDir(dir).node(0);
  {
    NodeDirLock first(node);
    const std::string why = test::error_of([&] { NodeDirLock second(node); });
    EXPECT_NE(why.find("is in use by another train (pid "), std::string::npos) << why;
  }
  NodeDirLock again(node);  // released with its holder
}

TEST(RunDir, FreshStartRefusesARunAndOverwriteRemovesIt) {
  const std::string dir = test::scratch_dir();
  const RunDir run(dir);
  const NodeDir node = run.node(0);
  prepare_node_dir(node, StartMode::fresh);  // empty: fine
  touch(node.final_weights());
  touch(node.checkpoint(10).weights);
  const std::string why = test::error_of([&] { prepare_node_dir(node, StartMode::fresh); });
  EXPECT_NE(why.find("already holds a run (final.safetensors, ckpt)"), std::string::npos) << why;
  prepare_node_dir(node, StartMode::resume);  // the checkpoints kept; the final retired
  EXPECT_TRUE(fs::exists(node.checkpoint(10).weights));
  EXPECT_FALSE(fs::exists(node.final_weights()));
  EXPECT_TRUE(fs::exists(node.path() + "/retired/final.safetensors"));
  touch(node.final_weights());
  prepare_node_dir(node, StartMode::overwrite);
  EXPECT_FALSE(fs::exists(node.final_weights()));
  EXPECT_FALSE(fs::exists(node.checkpoint_dir()));
  touch(run.merged());
  EXPECT_NE(test::error_of([&] { prepare_run_root(run, StartMode::fresh, 1); }).find("merged.safetensors"), std::string::npos);
  // --resume: the merge and the averaging check of the attempt before move aside; those an older
  // resume moved go one level down, kept.
  touch(run.averaging_check());
  fs::create_directories(dir + "/retired");
  std::ofstream(dir + "/retired/merged.safetensors") << "older";
  prepare_run_root(run, StartMode::resume, 1);
  EXPECT_FALSE(fs::exists(run.merged()));
  EXPECT_FALSE(fs::exists(run.averaging_check()));
  EXPECT_TRUE(fs::exists(dir + "/retired/averaging-check.json"));
  EXPECT_EQ(fs::file_size(dir + "/retired/merged.safetensors"), 1u);  // this resume's ("x"), not the older one
  EXPECT_EQ(fs::file_size(dir + "/retired/older-1/merged.safetensors"), 5u);  // the older one ("older"), kept
  prepare_run_root(run, StartMode::resume, 1);  // nothing left to retire: fine
}

// A run with fewer nodes than the one before in its directory: the extra node directories would
// pass for its nodes in `lofi average RUN`. A fresh start is refused, --overwrite removes them (not
// one a train holds), --resume leaves them (a changed node count is refused before, by name).
TEST(RunDir, NodesOfAPreviousRunPastTheNodeCountAreRefusedOrRemoved) {
  const std::string dir = test::scratch_dir();
  const RunDir run(dir);
  for (int64_t k : {0, 1, 2, 3}) touch(run.node(k).final_weights());
  fs::create_directories(run.node(4).path());  // holds no run: left alone
  const std::string why = test::error_of([&] { prepare_run_root(run, StartMode::fresh, 2); });
  EXPECT_NE(why.find(run.node(2).path() + " holds a node of a previous run, and this run has 2 nodes"), std::string::npos) << why;
  EXPECT_NE(why.find("--overwrite"), std::string::npos) << why;
  prepare_run_root(run, StartMode::resume, 2);
  EXPECT_TRUE(fs::exists(run.node(3).final_weights()));
  {
    NodeDirLock held(run.node(3));
    EXPECT_NE(test::error_of([&] { prepare_run_root(run, StartMode::overwrite, 2); }).find("is in use by another train"),
              std::string::npos);
  }
  EXPECT_TRUE(fs::exists(run.node(3).final_weights()));
  prepare_run_root(run, StartMode::overwrite, 2);
  EXPECT_EQ(run.node_ids(), (std::vector<int64_t>{0, 1, 4}));
  EXPECT_TRUE(fs::exists(run.node(1).final_weights()));  // this run's nodes are prepare_node_dir's
}

// Temporaries NAME.tmp-PID of writers that died go; those of live writers (this process, pid 1),
// other names' (when a name is given), and names that only look alike stay. Pid 4194304 is above
// any Linux pid.
TEST(RunDir, DeadWritersTemporariesGoAndNothingElse) {
  const std::string dir = test::scratch_dir();
  const std::string me = std::to_string(::getpid());
  const std::vector<std::string> kept = {"a.tmp-" + me, "a.tmp-1", "a.tmp-99999999999999999999", "a.tmp-12x",
                                         ".tmp-4194304", "a.tmp-", "a.safetensors"};
  for (const auto& name : kept) touch(dir + "/" + name);
  touch(dir + "/a.tmp-4194304");
  touch(dir + "/b.tmp-4194304");
  fs::create_directories(dir + "/c-hf.tmp-4194304/inner");  // a staged directory, with what is in it
  touch(dir + "/c-hf.tmp-4194304/inner/x");
  io::remove_dead_temporaries(dir, "a");
  EXPECT_FALSE(fs::exists(dir + "/a.tmp-4194304"));
  EXPECT_TRUE(fs::exists(dir + "/b.tmp-4194304")) << "another name's";
  EXPECT_TRUE(fs::exists(dir + "/c-hf.tmp-4194304"));
  io::remove_dead_temporaries(dir);
  EXPECT_FALSE(fs::exists(dir + "/b.tmp-4194304"));
  EXPECT_FALSE(fs::exists(dir + "/c-hf.tmp-4194304"));
  for (const auto& name : kept) EXPECT_TRUE(fs::exists(dir + "/" + name)) << name;
  io::remove_dead_writers_temporaries(dir + "/a.tmp-4194304");  // an output of that name: nothing of its own
  for (const auto& name : kept) EXPECT_TRUE(fs::exists(dir + "/" + name)) << name;
}

}  // namespace
}  // namespace lofi::run
