// dist.shard (ZeRO-1, -2 and -3 inside a node): the layout that splits a node's buckets among its
// workers, and real worker processes over loopback whose sharded nodes train to the unsharded
// node's weights, hold 1/G of the optimizer state (and, fully sharded, of the decoder blocks'
// parameters), send the bytes the mode predicts, and write checkpoints that resume under another
// sharding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "lofi/dist/shard_layout.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/strings.h"
#include "lofi/run/run_dir.h"
#include "lofi/train/checkpoint.h"
#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi {
namespace {

using test::last_metrics;
using test::max_abs_diff;
using test::run_lofi;

TEST(ShardLayout, EveryElementHasExactlyOneOwnerAndPartsAreEqual) {
  const std::vector<int64_t> numels{7, 130, 3, 64, 1, 250};
  for (int64_t workers : {1, 2, 3, 4}) {
    std::vector<std::vector<int>> owners;  // per parameter, per element: how many workers update it
    for (int64_t n : numels) owners.emplace_back(n, 0);
    int64_t owned = -1;
    for (int64_t rank = 0; rank < workers; ++rank) {
      const dist::ShardLayout layout = dist::plan_shards(numels, /*cap=*/100, workers, rank);
      // Buckets hold whole parameters, last registered first; a bigger one than the cap is alone.
      ASSERT_EQ(layout.buckets.front().params.front(), numels.size() - 1);
      for (const auto& b : layout.buckets) {
        EXPECT_EQ(b.padded % workers, 0);
        EXPECT_LT(b.padded - b.numel, workers);
      }
      if (owned < 0) owned = layout.owned_numel();
      EXPECT_EQ(layout.owned_numel(), owned) << "every worker's parts are alike";
      for (const dist::Piece& p : layout.pieces()) {
        ASSERT_LT(p.begin, p.end);
        ASSERT_LE(p.end, numels[p.param]);
        EXPECT_LE(p.shard_offset + p.numel(), layout.part_numel(p.bucket));
        // The piece sits in the bucket where its parameter does, at this worker's part.
        EXPECT_EQ(layout.slot[p.param].first, p.bucket);
        EXPECT_EQ(layout.slot[p.param].second + p.begin, rank * layout.part_numel(p.bucket) + p.shard_offset);
        for (int64_t e = p.begin; e < p.end; ++e) ++owners[p.param][e];
      }
    }
    for (size_t k = 0; k < numels.size(); ++k)
      for (int64_t e = 0; e < numels[k]; ++e) ASSERT_EQ(owners[k][e], 1) << workers << " workers, parameter " << k << " element " << e;
  }
}

TEST(ShardLayout, FullShardingGivesEachBlockOneBucket) {
  // Parameters 0 and 5 outside the blocks (embedding, head), 1-2 block 0, 3-4 block 1.
  const std::vector<int64_t> numels{300, 40, 90, 40, 90, 300}, units{-1, 0, 0, 1, 1, -1};
  const dist::ShardLayout layout = dist::plan_shards(numels, /*cap=*/100, /*workers=*/4, /*rank=*/1, units);
  std::vector<int64_t> bucket_units;
  for (const auto& b : layout.buckets) bucket_units.push_back(b.unit);
  // Reverse order; a block's 130 elements stay together past the cap of 100.
  EXPECT_EQ(bucket_units, (std::vector<int64_t>{-1, 1, 0, -1}));
  EXPECT_EQ(layout.buckets[1].numel, 130);
  EXPECT_EQ(layout.buckets[1].padded, 132);
  EXPECT_EQ(layout.buckets[1].params, (std::vector<size_t>{4, 3}));
}

std::string train_cmd(const std::string& data, const std::string& run, const std::string& extra) {
  // Small buckets: several of them, parameters cut between workers.
  return "train " + test::tiny_train_flags(data, run) + " --set dist.bucket_mb=0.05 " + extra;
}

// A ring collective over BYTES among N workers sends PASSES (N - 1) / N of them from each.
int64_t ring(int64_t bytes, int64_t n, int64_t passes) { return passes * (n - 1) * bytes / n; }

// Bytes of the decoder blocks' parameters in a final weights file: as they are, and with each
// block's bucket padded to a multiple of WORKERS elements.
struct BlockBytes {
  int64_t bytes = 0, padded = 0;
};
BlockBytes block_bytes(const std::string& weights, int64_t workers) {
  std::map<std::string, int64_t> blocks;  // "layers.N." -> elements
  const std::regex block_name(".*(layers\\.[0-9]+\\.).*");
  const io::SafetensorsFile file(weights);
  for (const auto& e : file.entries()) {
    std::smatch m;
    if (std::regex_match(e.name, m, block_name)) blocks[m[1]] += static_cast<int64_t>((e.end - e.begin) / 4);
  }
  BlockBytes out;
  for (const auto& [name, n] : blocks) out.bytes += 4 * n, out.padded += 4 * ((n + workers - 1) / workers * workers);
  return out;
}

// The elements each worker of the sharded node updates, as its start line says.
int64_t owned_elements(const std::string& output) {
  std::smatch m;
  if (!std::regex_search(output, m, std::regex("workers updates ([0-9]+) of the ([0-9]+) trainable"))) return -1;
  return std::stoll(m[1]);
}

TEST(DistShard, ShardedNodesTrainLikeTheUnshardedNode) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  int64_t params = 0;
  for (int64_t workers : {2, 4}) {
    const std::string launch = "launch --workers " + std::to_string(workers) + " -- ";
    const std::string base = dir + "/none" + std::to_string(workers);
    auto none = run_lofi(launch + train_cmd(data, base, ""));
    ASSERT_EQ(none.status, 0) << none.output;
    if (params == 0) {
      const io::SafetensorsFile final_weights(base + "/node-00/final.safetensors");
      for (const auto& e : final_weights.entries()) params += static_cast<int64_t>((e.end - e.begin) / 4);
    }
    const auto unsharded = last_metrics(base + "/node-00");
    for (const std::string mode : {"optimizer", "gradients", "full"}) {
      for (int64_t accum : {1, 2}) {
        // Fully sharded, the blocks' parameters are gathered again for a recomputation: checkpointed.
        const bool recompute = mode == "full" && accum == 2;
        const std::string run = dir + "/" + mode + std::to_string(workers) + "-" + std::to_string(accum);
        auto r = run_lofi(launch + train_cmd(data, run, "--set dist.shard=" + mode + " --set train.grad_accum=" + std::to_string(accum) +
                                                            (recompute ? " --set train.activation_checkpointing=1" : "")));
        ASSERT_EQ(r.status, 0) << r.output;
        SCOPED_TRACE(mode + ", " + std::to_string(workers) + " workers, grad_accum " + std::to_string(accum));
        EXPECT_LE(max_abs_diff(base + "/node-00/final.safetensors", run + "/node-00/final.safetensors"), 1e-6);
        const int64_t owned = owned_elements(r.output);
        ASSERT_GT(owned, 0) << r.output;
        EXPECT_GE(owned * workers, params);  // padding: fewer than G elements a bucket
        EXPECT_LT(owned * workers, params + 64 * workers);
        // Each worker's AdamW state is its 1/G: two fp32 moments of its elements (and a step count
        // per piece), against the unsharded node's of every parameter.
        const auto m = last_metrics(run + "/node-00");
        EXPECT_NEAR(m["grad_norm"].get<double>(), unsharded["grad_norm"].get<double>(), 1e-5 * unsharded["grad_norm"].get<double>());
        const int64_t state = m["optimizer_state_bytes"].get<int64_t>(), full = unsharded["optimizer_state_bytes"].get<int64_t>();
        EXPECT_GE(state, 8 * owned);
        EXPECT_LE(state, 8 * owned + 4 * 64);
        EXPECT_NEAR(static_cast<double>(state) / static_cast<double>(full), 1.0 / static_cast<double>(workers), 0.01);
        // Bytes within the node, per step: the gradients all-reduced (optimizer) or
        // reduce-scattered at every micro-batch (gradients), the updated weights all-gathered,
        // the loss with the stop flag all-reduced, and (gradients) the squared norm's sum.
        const int64_t padded = 4 * owned * workers;  // bytes of every bucket, padded
        // Fully sharded, each block's bucket is gathered before its forward and its backward, at
        // every micro-batch; after the step only the parameters outside the blocks are gathered.
        const BlockBytes blocks = block_bytes(base + "/node-00/final.safetensors", workers);
        const int64_t per_step = mode == "optimizer"   ? ring(padded, workers, 2) + ring(padded, workers, 1) + ring(8, workers, 2)
                                 : mode == "gradients" ? accum * ring(padded, workers, 1) + ring(padded, workers, 1) + ring(8, workers, 2) + ring(4, workers, 2)
                                                       : accum * (2 * ring(blocks.padded, workers, 1) + ring(padded, workers, 1)) +
                                                             ring(padded - blocks.padded, workers, 1) + ring(8, workers, 2) + ring(4, workers, 2);
        EXPECT_EQ(m["bytes_within_node"].get<int64_t>(), 6 * per_step);
        // Between steps a worker holds every parameter whole, or (full) its 1/G of the blocks'.
        EXPECT_EQ(unsharded["parameter_bytes"].get<int64_t>(), 4 * params);
        EXPECT_EQ(m["parameter_bytes"].get<int64_t>(),
                  mode == "full" ? 4 * params - blocks.bytes + blocks.padded / workers : 4 * params);
        if (mode != "optimizer") {
          // Between steps a worker holds its parts of the gradients only.
          EXPECT_EQ(m["gradient_bytes"].get<int64_t>(), 4 * owned);
          EXPECT_EQ(unsharded["gradient_bytes"].get<int64_t>(), 2 * 4 * params);  // .grad and the buckets
        }
      }
    }
  }
  EXPECT_EQ(last_metrics(dir + "/none2/node-00")["bytes_within_node"].get<int64_t>(), 6 * (ring(4 * params, 2, 2) + ring(8, 2, 2)));
}

// dist.reduce_dtype = "bf16": the buckets cross the node in bf16, half the bytes of fp32, and the
// run stays near the fp32 one: AdamW moves an element by at most about lr a step, so two runs of 6
// steps part by at most 12 lr; they do part (the gradients were rounded).
TEST(DistShard, GradientsReducedInBf16SendHalfTheBytes) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string launch = "launch --workers 2 -- ";
  auto fp32 = run_lofi(launch + train_cmd(data, dir + "/fp32", ""));
  ASSERT_EQ(fp32.status, 0) << fp32.output;
  int64_t params = 0;
  const io::SafetensorsFile final_weights(dir + "/fp32/node-00/final.safetensors");
  for (const auto& e : final_weights.entries()) params += static_cast<int64_t>((e.end - e.begin) / 4);
  const auto reference = last_metrics(dir + "/fp32/node-00");
  const double lr = train::Config{}.train.lr;
  for (const std::string mode : {"none", "gradients", "full"}) {
    SCOPED_TRACE(mode);
    const std::string run = dir + "/bf16-" + mode;
    auto r = run_lofi(launch + train_cmd(data, run, "--set dist.reduce_dtype=bf16 --set dist.shard=" + mode));
    ASSERT_EQ(r.status, 0) << r.output;
    const double diff = max_abs_diff(dir + "/fp32/node-00/final.safetensors", run + "/node-00/final.safetensors");
    EXPECT_GT(diff, 0.0);
    EXPECT_LT(diff, 12 * lr);
    const auto m = last_metrics(run + "/node-00");
    EXPECT_NEAR(m["loss"].get<double>(), reference["loss"].get<double>(), 0.01 * reference["loss"].get<double>());
    const int64_t bytes = m["bytes_within_node"].get<int64_t>();
    if (mode == "none") {
      EXPECT_EQ(bytes, 6 * (ring(2 * params, 2, 2) + ring(8, 2, 2)));  // the fp32 node's: ring(4 P, 2, 2)
    } else if (mode == "gradients") {
      const int64_t padded = 4 * owned_elements(r.output) * 2;  // fp32 bytes of every bucket, padded
      EXPECT_EQ(bytes, 6 * (ring(padded / 2, 2, 1) + ring(padded, 2, 1) + ring(8, 2, 2) + ring(4, 2, 2)));
    }
  }
  auto flat = run_lofi(train_cmd(data, dir + "/flat", "--set dist.reduce_dtype=bf16 --set dist.overlap=false"));
  EXPECT_NE(flat.status, 0);
  EXPECT_NE(flat.output.find("dist.reduce_dtype = \"bf16\" reduces through the gradient buckets"), std::string::npos) << flat.output;
}

// train.param_dtype = "bf16" (under bf16 autocast): a worker computes in and gathers bf16 weights,
// their fp32 masters live in the optimizer (its 1/G of them where the node shards it). Every mode
// trains near the fp32-weight run, sends the bytes its bf16 gathers predict, and writes the fp32
// masters to its checkpoints and final, so a run resumes exactly where it stopped.
TEST(DistShard, Bf16WeightsKeepFp32MastersInEveryMode) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string launch = "launch --workers 2 -- ", autocast = "--set train.precision=bf16 ";
  auto fp32 = run_lofi(launch + train_cmd(data, dir + "/fp32", autocast));
  ASSERT_EQ(fp32.status, 0) << fp32.output;
  int64_t P = 0;
  const io::SafetensorsFile fp32_final(dir + "/fp32/node-00/final.safetensors");
  for (const auto& e : fp32_final.entries()) P += static_cast<int64_t>((e.end - e.begin) / 4);
  const auto reference = last_metrics(dir + "/fp32/node-00");
  const BlockBytes blocks = block_bytes(dir + "/fp32/node-00/final.safetensors", 2);
  const double lr = train::Config{}.train.lr;
  for (const std::string mode : {"none", "optimizer", "gradients", "full"}) {
    SCOPED_TRACE(mode);
    const std::string run = dir + "/" + mode, flags = autocast + "--set train.param_dtype=bf16 --set train.ckpt_every=3 --set dist.shard=" + mode;
    auto r = run_lofi(launch + train_cmd(data, run, flags));
    ASSERT_EQ(r.status, 0) << r.output;
    for (const std::string name : {"final.safetensors", "ckpt/step-000003.safetensors"}) {
      const io::SafetensorsFile file(run + "/node-00/" + name);
      for (const auto& e : file.entries()) EXPECT_EQ(e.dtype, "F32") << name << " " << e.name;
    }
    const double diff = max_abs_diff(dir + "/fp32/node-00/final.safetensors", run + "/node-00/final.safetensors");
    EXPECT_GT(diff, 0.0);
    EXPECT_LT(diff, 12 * lr);
    const auto m = last_metrics(run + "/node-00");
    EXPECT_NEAR(m["loss"].get<double>(), reference["loss"].get<double>(), 0.02 * reference["loss"].get<double>());
    // Between steps: the bf16 weights (full: those outside the blocks, and its fp32 part of the
    // blocks') and the fp32 masters of what this worker updates.
    const int64_t owned = mode == "none" ? P : owned_elements(r.output), padded = 4 * owned * 2;
    const int64_t block_part = blocks.padded / 2;  // bytes of its fp32 part of the blocks
    EXPECT_EQ(m["parameter_bytes"].get<int64_t>(), mode == "full" ? 2 * (P - blocks.bytes / 4) + block_part + 4 * (owned - block_part / 4)
                                                                  : 2 * P + 4 * owned);
    // The updated weights are gathered in bf16 (full: and the blocks before their forward and
    // backward); the gradients are reduced in fp32.
    const int64_t per_step = mode == "none"        ? ring(4 * P, 2, 2) + ring(8, 2, 2)
                             : mode == "optimizer" ? ring(padded, 2, 2) + ring(padded / 2, 2, 1) + ring(8, 2, 2)
                             : mode == "gradients" ? ring(padded, 2, 1) + ring(padded / 2, 2, 1) + ring(8, 2, 2) + ring(4, 2, 2)
                                                   : 2 * ring(blocks.padded / 2, 2, 1) + ring(padded, 2, 1) +
                                                         ring((padded - blocks.padded) / 2, 2, 1) + ring(8, 2, 2) + ring(4, 2, 2);
    // And the checkpoint of step 3 gathers the fp32 masters (each worker writes its own AdamW
    // state; a flag says all did).
    EXPECT_EQ(m["bytes_within_node"].get<int64_t>(), 6 * per_step + (mode == "none" ? 0 : ring(padded, 2, 1) + ring(4, 2, 2)));
    if (mode != "none" && mode != "full") continue;
    // Resumed from step 3, the run ends where it did.
    std::filesystem::rename(run + "/node-00/final.safetensors", dir + "/" + mode + "-final.safetensors");
    std::filesystem::remove(run + "/node-00/ckpt/step-000006.safetensors");
    std::filesystem::remove(run + "/node-00/ckpt/step-000006.optim.safetensors");
    auto resumed = run_lofi(launch + train_cmd(data, run, flags + " --resume"));
    ASSERT_EQ(resumed.status, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("step 4/6"), std::string::npos) << resumed.output;
    EXPECT_EQ(max_abs_diff(dir + "/" + mode + "-final.safetensors", run + "/node-00/final.safetensors"), 0.0);
  }
}

// Two weight files compared: the largest difference but in the attention's key biases, and the
// largest key-bias value of either. A key bias gets no gradient in exact arithmetic (the softmax
// ignores a constant added to all of a query's scores), so it holds rounding noise, which AdamW
// scales up as it normalises and which depends on the order of the sums: it is held to the size of
// noise instead of to the other run's noise.
struct KeyBiasSplit {
  double others = 0, key_bias = 0;
};
KeyBiasSplit diff_but_key_biases(const std::string& a, const std::string& b) {
  io::SafetensorsFile fa(a), fb(b);
  EXPECT_EQ(fa.entries().size(), fb.entries().size());
  KeyBiasSplit d;
  for (const auto& e : fa.entries()) {
    const torch::Tensor ta = fa.load(e), tb = fb.load(e.name);
    if (ends_with(e.name, "k_proj.bias"))
      d.key_bias = std::max({d.key_bias, ta.abs().max().item<double>(), tb.abs().max().item<double>()});
    else
      d.others = std::max(d.others, (ta - tb).abs().max().item<double>());
  }
  return d;
}

// A lo-fi job of sharded nodes: each node's final is written as its workers gather it, bucket by
// bucket (no worker holds the weights whole after training), and the merging leader loads the
// finals it evaluates: the merge and its averaging check are the unsharded job's. With bf16
// weights the finals hold the fp32 masters and the check evaluates them in fp32.
TEST(DistShard, ShardedNodesMergeAndCheckTheAverageAsUnshardedNodesDo) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string job = "launch --workers 4 -- ", flags = "--set dist.nodes=2 --set data.val=" + data + " --set train.eval_batches=2 ";
  auto check_of = [](const std::string& run) { return nlohmann::json::parse(io::read_text_file(run::RunDir(run).averaging_check())); };
  auto none = run_lofi(job + train_cmd(data, dir + "/none", flags));
  ASSERT_EQ(none.status, 0) << none.output;
  const auto reference = check_of(dir + "/none");
  for (const std::string extra : {"--set dist.shard=full", "--set dist.shard=full --set train.param_dtype=bf16 --set train.precision=bf16",
                                  "--set dist.shard=gradients --set train.param_dtype=bf16 --set train.precision=bf16"}) {
    SCOPED_TRACE(extra);
    const std::string run = dir + "/" + std::to_string(std::hash<std::string>{}(extra));
    auto r = run_lofi(job + train_cmd(data, run, flags + extra));
    ASSERT_EQ(r.status, 0) << r.output;
    const auto check = check_of(run);
    ASSERT_EQ(check["nodes"].size(), 2u) << check.dump();
    const bool bf16 = extra.find("bf16") != std::string::npos;
    for (const std::string file : {"/node-00/final.safetensors", "/node-01/final.safetensors", "/merged.safetensors"}) {
      const io::SafetensorsFile weights(run + file);
      for (const auto& e : weights.entries()) EXPECT_EQ(e.dtype, "F32") << file << " " << e.name;
      if (!bf16) {
        const KeyBiasSplit d = diff_but_key_biases(dir + "/none" + file, run + file);
        EXPECT_LE(d.others, 1e-6) << file;
        EXPECT_LE(d.key_bias, 1e-5) << file;
      }
    }
    // The same weights give the same losses; bf16 weights end elsewhere, near them.
    const double tolerance = bf16 ? 0.02 : 1e-5;
    EXPECT_NEAR(check["average"].get<double>(), reference["average"].get<double>(), tolerance * reference["average"].get<double>());
    for (const std::string node : {"0", "1"})
      EXPECT_NEAR(check["nodes"][node].get<double>(), reference["nodes"][node].get<double>(), tolerance * reference["nodes"][node].get<double>());
  }
}

// The largest difference between a sharded checkpoint's optimizer files (one per worker, each
// holding its pieces, "NAME.range" in its metadata) and the whole state of an unsharded node's
// file; every element must be held by exactly one worker's file, else the difference is infinite.
double sharded_state_diff(const std::string& whole_path, const std::vector<std::string>& shards) {
  const io::SafetensorsFile whole(whole_path);
  std::map<std::string, int64_t> held;  // state tensor -> elements the shards hold
  double diff = 0;
  for (const auto& path : shards) {
    const io::SafetensorsFile shard(path);
    for (const auto& e : shard.entries()) {
      const std::string param = e.name.substr(0, e.name.rfind('.'));
      const std::string range = shard.metadata().at(param + ".range");
      const int64_t begin = std::stoll(range.substr(0, range.find(','))), end = std::stoll(range.substr(range.find(',') + 1));
      const torch::Tensor mine = shard.load(e.name), theirs = whole.load(e.name).reshape({-1}).narrow(0, begin, end - begin);
      diff = std::max(diff, (mine - theirs).abs().max().item<double>());
      held[e.name] += end - begin;
    }
  }
  for (const auto& e : whole.entries())
    if (held[e.name] != whole.load(e).numel()) return INFINITY;
  return diff;
}

// A sharded node's checkpoint is one optimizer file per worker, each its own pieces' state, never
// gathered; it resumes under another dist.shard and another worker count, each worker reading its
// new pieces from the files that hold them. A missing worker's file makes the checkpoint unusable.
TEST(DistShard, ShardedCheckpointsResumeUnderAnotherSharding) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string flags = "--set train.ckpt_every=3 ";
  auto launch = [](int64_t workers) { return "launch --workers " + std::to_string(workers) + " -- "; };
  auto whole = run_lofi(launch(2) + train_cmd(data, dir + "/whole", flags));
  ASSERT_EQ(whole.status, 0) << whole.output;
  const std::string ckpt = "/node-00/ckpt/step-000003";
  struct Resume {
    std::string first;
    int64_t workers;
    std::string then;
    int64_t then_workers;
  };
  for (const Resume& r : std::vector<Resume>{{"gradients", 2, "optimizer", 2}, {"full", 2, "none", 2}, {"none", 2, "full", 2},
                                             {"gradients", 4, "full", 2}}) {
    SCOPED_TRACE(r.first + " on " + std::to_string(r.workers) + " workers, resumed " + r.then + " on " + std::to_string(r.then_workers));
    const std::string run = dir + "/" + r.first + std::to_string(r.workers) + "-" + r.then + std::to_string(r.then_workers);
    auto part = run_lofi(launch(r.workers) + train_cmd(data, run, flags + "--set dist.shard=" + r.first));
    ASSERT_EQ(part.status, 0) << part.output;
    EXPECT_LE(max_abs_diff(dir + "/whole" + ckpt + ".safetensors", run + ckpt + ".safetensors"), 1e-6);
    if (r.first == "none") {
      EXPECT_LE(max_abs_diff(dir + "/whole" + ckpt + ".optim.safetensors", run + ckpt + ".optim.safetensors"), 1e-6);
    } else {
      // Each worker's own file, holding the unsharded node's state piece by piece; no whole file.
      const run::Checkpoint paths = run::NodeDir(run + "/node-00").checkpoint(3);
      std::vector<std::string> shards;
      for (int64_t w = 0; w < r.workers; ++w) shards.push_back(paths.optimizer_shard(w, r.workers));
      EXPECT_EQ(train::optimizer_files(paths), shards);
      EXPECT_FALSE(std::filesystem::exists(paths.optimizer));
      EXPECT_LE(sharded_state_diff(dir + "/whole" + ckpt + ".optim.safetensors", shards), 1e-6);
      EXPECT_EQ(io::SafetensorsFile(shards.back()).metadata().at("model.decoder.embed_tokens.weight.step"), "3");
    }
    // Without step 6's weights file its checkpoint is incomplete: the run resumes from step 3, and
    // saving step 6 again leaves only the optimizer files the new weights file names.
    std::filesystem::remove(run + "/node-00/final.safetensors");
    std::filesystem::remove(run + "/node-00/ckpt/step-000006.safetensors");
    auto resumed = run_lofi(launch(r.then_workers) + train_cmd(data, run, flags + "--resume --set dist.shard=" + r.then));
    ASSERT_EQ(resumed.status, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("step 4/6"), std::string::npos) << resumed.output;
    const run::Checkpoint step6 = run::NodeDir(run + "/node-00").checkpoint(6);
    std::vector<std::string> step6_files, named{step6.weights};
    for (const auto& f : train::optimizer_files(step6)) named.push_back(f);
    for (const auto& entry : std::filesystem::directory_iterator(run + "/node-00/ckpt"))
      if (entry.path().filename().string().rfind("step-000006", 0) == 0) step6_files.push_back(entry.path().string());
    std::sort(step6_files.begin(), step6_files.end()), std::sort(named.begin(), named.end());
    EXPECT_EQ(step6_files, named);
    EXPECT_LE(max_abs_diff(dir + "/whole/node-00/final.safetensors", run + "/node-00/final.safetensors"), r.workers == r.then_workers ? 1e-6 : 1e-5);
  }
  // Pruned, an older checkpoint goes with every worker's file; a checkpoint missing a worker's
  // file does not verify, and says which.
  const std::string run = dir + "/missing", sets = "--set train.ckpt_every=3 --set train.keep_checkpoints=1 --set dist.shard=gradients";
  ASSERT_EQ(run_lofi(launch(2) + train_cmd(data, run, sets)).status, 0);
  std::vector<std::string> kept;
  for (const auto& entry : std::filesystem::directory_iterator(run + "/node-00/ckpt")) kept.push_back(entry.path().filename());
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(kept, (std::vector<std::string>{"step-000006.optim-00000-of-00002.safetensors", "step-000006.optim-00001-of-00002.safetensors",
                                            "step-000006.safetensors"}));
  std::filesystem::remove(run::NodeDir(run + "/node-00").checkpoint(6).optimizer_shard(1, 2));
  auto missing = run_lofi(launch(2) + train_cmd(data, run, sets + " --resume"));
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.output.find("step-000006.optim-00001-of-00002.safetensors"), std::string::npos) << missing.output;
}

TEST(DistShard, OneWorkerSaysItDoesNothingAndBadSettingsAreOneLine) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto one = run_lofi(train_cmd(data, dir + "/one", "--set dist.shard=optimizer"));
  ASSERT_EQ(one.status, 0) << one.output;
  EXPECT_NE(one.output.find("does nothing in a node of one worker"), std::string::npos) << one.output;
  struct Refused {
    std::string run, flags, says;
  };
  for (const Refused& bad : std::vector<Refused>{
           {"flat", "--set dist.shard=gradients --set dist.overlap=false", "dist.overlap = false"},
           {"full", "--set dist.shard=everything", "dist.shard"},
           {"lora", "--set dist.shard=full --set lora.rank=4", "dist.shard = \"full\" shards a full fine-tune"},
           {"bf16", "--set train.param_dtype=bf16", "set train.precision = \"bf16\" too"},
           {"bf16-lora", "--set train.param_dtype=bf16 --set train.precision=bf16 --set lora.rank=4", "keeps its small adapters in fp32"},
           {"bf16-sync", "--set train.param_dtype=bf16 --set train.precision=bf16 --set dist.nodes=2 --set dist.sync_every=2",
            "the periodic sync averages the weights, not their fp32 masters"}}) {
    auto r = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/" + bad.run, bad.flags));
    EXPECT_NE(r.status, 0) << bad.run;
    EXPECT_NE(r.output.find(bad.says), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir + "/" + bad.run + "/node-00")) << bad.run << ": refused before anything is written";
  }
}

// A fully sharded node builds its decoder blocks in pieces: each worker makes a block's parameters
// only as it packs them (model/deferred_weights.h). From a Hugging Face directory (Llama's, and
// gpt-oss's with its experts in MXFP4) it trains to the unsharded node's weights, and a model.init
// holding NaN in a block is refused by the tensor's name as a whole start refuses it.
TEST(DistShard, AStartBuiltInPiecesTrainsFromModelInitLikeTheUnshardedNode) {
  const std::string dir = test::scratch_dir();
  test::write_fixture_tokens(dir);
  const std::filesystem::path fixtures = std::filesystem::path(LOFI_FIXTURES) / "hf" / "transformers";
  const std::string init = (fixtures / "llama-gqa").string();
  auto cmd = [&](const std::string& run, const std::string& source, const std::string& shard) {
    return "launch --workers 2 -- train --set model.init=" + source + " --set data.train=" + dir + "/tokens.bin --set run.dir=" +
           dir + "/" + run + " --set data.seq_len=16 --set train.batch_size=4 --set train.steps=3 --set train.warmup_steps=1"
           " --set train.threads=1 --set dist.bucket_mb=0.01 --set dist.timeout_s=60 --set dist.shard=" + shard;
  };
  // Llama's Linear layers; gpt-oss's 3-D experts, read from MXFP4 blocks as each block is made.
  for (const std::string source : {init, (fixtures / "gpt-oss-mxfp4").string()}) {
    SCOPED_TRACE(source);
    const std::string name = std::filesystem::path(source).filename().string();
    auto whole = run_lofi(cmd(name + "-none", source, "none"));
    ASSERT_EQ(whole.status, 0) << whole.output;
    auto pieces = run_lofi(cmd(name + "-full", source, "full"));
    ASSERT_EQ(pieces.status, 0) << pieces.output;
    EXPECT_NE(pieces.output.find("made one block at a time"), std::string::npos) << pieces.output;
    EXPECT_LE(max_abs_diff(dir + "/" + name + "-none/node-00/final.safetensors", dir + "/" + name + "-full/node-00/final.safetensors"),
              1e-6);
  }

  const std::string bad = dir + "/nan";
  std::filesystem::create_directories(bad);
  std::filesystem::copy_file(init + "/config.json", bad + "/config.json");
  io::NamedTensors tensors = io::SafetensorsFile(init + "/model.safetensors").load_all();
  for (auto& [name, t] : tensors)
    if (name == "model.layers.1.mlp.down_proj.weight") t.view({-1})[5] = std::nan("");
  io::save_safetensors(bad + "/model.safetensors", tensors);
  auto refused = run_lofi(cmd("refused", bad, "full"));
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.output.find("model.layers.1.mlp.down_proj.weight"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("cannot be fine-tuned"), std::string::npos) << refused.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/refused/node-00/final.safetensors"));
}

}  // namespace
}  // namespace lofi
