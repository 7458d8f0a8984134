// The scale of what nodes exchange, checked where AdamW and clipping cannot hide it: with clipping
// off, AdamW's first moment is linear in the gradient, so a gradient all-reduced as a sum instead
// of a mean, a dropped 1/grad_accum, or a sync that adds instead of averaging all show up in the
// optimizer state or the weights (AdamW's update itself is nearly scale-free: g and 2g step alike).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/demo/synthetic_text.h"
#include "lofi/data/token_shards.h"
#include "lofi/io/safetensors.h"
#include "test_util.h"

namespace lofi {
namespace {

using test::last_metrics;
using test::max_abs_diff;
using test::run_lofi;

std::string train_cmd(const std::string& data, const std::string& run, const std::string& extra) {
  return "train " + test::tiny_train_flags(data, run) + " --set train.grad_clip=0 " + extra;
}

// max |a - b| over max |b|, over all the tensors of two safetensors files (one scale for the
// whole file: some gradients, e.g. of the key biases, are zero up to rounding).
double max_rel_diff(const std::string& a, const std::string& b) {
  io::SafetensorsFile fa(a), fb(b);
  EXPECT_EQ(fa.entries().size(), fb.entries().size());
  double diff = 0, scale = 0;
  for (const auto& e : fa.entries()) {
    torch::Tensor x = fa.load(e), y = fb.load(e.name);
    diff = std::max(diff, (x - y).abs().max().item<double>());
    scale = std::max(scale, y.abs().max().item<double>());
  }
  return diff / scale;
}

std::string final_optimizer(const std::string& run) { return run + "/node-00/ckpt/step-000006.optim.safetensors"; }

TEST(DistInvariants, NodeGradientsAreAveragedNotSummed) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  ASSERT_EQ(run_lofi("launch --workers 1 -- " + train_cmd(data, dir + "/one", "")).status, 0);
  for (const char* overlap : {"true", "false"}) {
    const std::string run = dir + "/two-" + overlap;
    auto two = run_lofi("launch --workers 2 -- " + train_cmd(data, run, std::string("--set dist.overlap=") + overlap));
    ASSERT_EQ(two.status, 0) << two.output;
    EXPECT_LE(max_rel_diff(final_optimizer(run), final_optimizer(dir + "/one")), 1e-4) << "overlap " << overlap;
    EXPECT_LE(max_abs_diff(run + "/node-00/final.safetensors", dir + "/one/node-00/final.safetensors"), 1e-5);
    EXPECT_NEAR(last_metrics(run + "/node-00")["loss"].get<double>(), last_metrics(dir + "/one/node-00")["loss"].get<double>(),
                1e-5);
  }
}

TEST(DistInvariants, AccumulationKeepsTheGradientAndLossScale) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/full", "")).status, 0);
  auto accum = run_lofi(train_cmd(data, dir + "/accum", "--set train.grad_accum=4"));
  ASSERT_EQ(accum.status, 0) << accum.output;
  EXPECT_LE(max_rel_diff(final_optimizer(dir + "/accum"), final_optimizer(dir + "/full")), 1e-4);
  EXPECT_LE(max_abs_diff(dir + "/accum/node-00/final.safetensors", dir + "/full/node-00/final.safetensors"), 1e-5);
  // The logged loss is the mean over the micro-batches, not their sum.
  EXPECT_NEAR(last_metrics(dir + "/accum/node-00")["loss"].get<double>(), last_metrics(dir + "/full/node-00")["loss"].get<double>(),
              1e-5);
}

// Syncing at the last step only: the two nodes train exactly as unsynced lo-fi nodes, then both
// hold the mean of the two, which is what the unsynced job's merge computes from its finals.
TEST(DistInvariants, SyncHoldsTheMeanOfTheNodes) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto lofi = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/lofi", "--set dist.nodes=2"));
  ASSERT_EQ(lofi.status, 0) << lofi.output;
  auto synced = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/synced", "--set dist.nodes=2 --set dist.sync_every=6"));
  ASSERT_EQ(synced.status, 0) << synced.output;
  ASSERT_GT(max_abs_diff(dir + "/lofi/node-00/final.safetensors", dir + "/lofi/node-01/final.safetensors"), 1e-4);
  for (const char* node : {"node-00", "node-01"})
    EXPECT_LE(max_abs_diff(dir + "/synced/" + node + "/final.safetensors", dir + "/lofi/merged.safetensors"), 1e-6) << node;
  EXPECT_GT(last_metrics(dir + "/synced/node-00")["bytes_between_nodes"].get<int64_t>(), 0);
}

// data_split = "shard": node k samples only its own slice. On a file whose first half is prose and
// second half arithmetic, each node ends better on its own half than the other node does.
TEST(DistInvariants, ShardSplitGivesEachNodeItsOwnSlice) {
  std::string dir = test::scratch_dir();
  std::vector<uint32_t> ids = demo::synthetic_corpus("general", 20000, 1), sums = demo::synthetic_corpus("sums", 20000, 1);
  const size_t half = ids.size();
  ids.insert(ids.end(), sums.begin(), sums.end());
  data::write_token_shard(dir + "/both.bin", ids);
  data::write_token_shard(dir + "/general.bin", std::vector<uint32_t>(ids.begin(), ids.begin() + half));
  data::write_token_shard(dir + "/sums.bin", sums);
  auto r = run_lofi("launch --workers 2 -- " +
                    train_cmd(dir + "/both.bin", dir + "/run", "--set dist.nodes=2 --set dist.data_split=shard --set train.steps=30 --set train.lr=3e-3"));
  ASSERT_EQ(r.status, 0) << r.output;
  auto loss = [&](int node, const std::string& set) {
    const std::string json = dir + "/eval.json";
    auto e = run_lofi("eval --model " + dir + "/run/node-0" + std::to_string(node) + "/final.safetensors --data d=" + dir + "/" +
                      set + ".bin --max-windows 64 --json " + json);
    EXPECT_EQ(e.status, 0) << e.output;
    return nlohmann::json::parse(std::ifstream(json))["results"][0]["datasets"]["d"]["loss"].get<double>();
  };
  EXPECT_LT(loss(0, "general"), loss(1, "general"));
  EXPECT_LT(loss(1, "sums"), loss(0, "sums"));
}

}  // namespace
}  // namespace lofi
