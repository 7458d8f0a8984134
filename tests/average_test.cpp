#include "lofi/merge/average.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lofi/error.h"
#include "lofi/io/safetensors.h"
#include "test_util.h"

namespace lofi::merge {
namespace {

namespace fs = std::filesystem;

io::NamedTensors random_weights(int seed, torch::Dtype dtype = torch::kFloat32) {
  torch::manual_seed(seed);
  return {{"embed.weight", torch::randn({64, 16}).to(dtype)},
          {"layers.0.fc.weight", torch::randn({16, 16}).to(dtype)},
          {"layers.0.fc.bias", torch::randn({16}).to(dtype)},
          {"layers.1.fc.weight", torch::randn({16, 16}).to(dtype)},
          {"empty", torch::zeros({0, 4}).to(dtype)},
          {"big", torch::randn({3, 700001}).to(dtype)},  // spans several streaming chunks
          {"step", torch::tensor({7}, torch::kInt64)}};
}

std::vector<std::string> write_inputs(const std::string& dir, int n, torch::Dtype dtype = torch::kFloat32) {
  std::vector<std::string> paths;
  for (int i = 0; i < n; ++i) {
    paths.push_back(dir + "/in" + std::to_string(i) + ".safetensors");
    io::save_safetensors(paths.back(), random_weights(i, dtype));
  }
  return paths;
}

TEST(Average, StreamingEqualsInMemoryBitForBit) {
  std::string dir = test::scratch_dir();
  auto paths = write_inputs(dir, 3);
  std::vector<double> weights{0.5, 2.0, 1.5};
  AverageOptions opt;
  opt.inputs = paths;
  opt.weights = weights;
  opt.out = dir + "/avg.safetensors";
  opt.threads = 3;
  average_checkpoints(opt);
  // The plain way: every model in memory, the same arithmetic, one tensor after another.
  std::vector<io::NamedTensors> models;
  for (int i = 0; i < 3; ++i) models.push_back(random_weights(i));
  io::SafetensorsFile avg(opt.out);
  for (size_t t = 0; t + 1 < models[0].size(); ++t) {
    torch::Tensor sum = models[0][t].second.to(torch::kFloat64) * weights[0];
    for (int i = 1; i < 3; ++i) sum.add_(models[i][t].second.to(torch::kFloat64), weights[i]);
    torch::Tensor expected = sum.div_(4.0).to(torch::kFloat32);
    EXPECT_TRUE(torch::equal(avg.load(models[0][t].first), expected)) << models[0][t].first;
  }
  EXPECT_TRUE(torch::equal(avg.load("step"), torch::tensor({7}, torch::kInt64)));
}

TEST(Average, HalfPrecisionKeepsItsDtypeUnlessAsked) {
  std::string dir = test::scratch_dir();
  auto paths = write_inputs(dir, 2, torch::kBFloat16);
  AverageOptions opt;
  opt.inputs = paths;
  opt.out = dir + "/bf16.safetensors";
  average_checkpoints(opt);
  io::SafetensorsFile bf16(opt.out);
  EXPECT_EQ(bf16.find("embed.weight")->dtype, "BF16");
  opt.dtype = "F32";
  opt.out = dir + "/f32.safetensors";
  average_checkpoints(opt);
  io::SafetensorsFile f32(opt.out);
  torch::Tensor a = random_weights(0, torch::kBFloat16)[0].second.to(torch::kFloat32);
  torch::Tensor b = random_weights(1, torch::kBFloat16)[0].second.to(torch::kFloat32);
  EXPECT_EQ(f32.find("embed.weight")->dtype, "F32");
  EXPECT_TRUE(torch::equal(f32.load("embed.weight"), (a + b) / 2));  // exact in fp32
  EXPECT_TRUE(torch::equal(bf16.load("embed.weight"), ((a + b) / 2).to(torch::kBFloat16)));
}

TEST(Average, MinInputsSkipsMissingAndCorruptInputs) {
  std::string dir = test::scratch_dir();
  auto paths = write_inputs(dir, 3);
  fs::resize_file(paths[2], fs::file_size(paths[2]) - 100);  // corrupt: truncated
  paths.push_back(dir + "/never-written.safetensors");      // missing: a node that died
  AverageOptions opt;
  opt.inputs = paths;
  opt.out = dir + "/avg.safetensors";
  EXPECT_THROW(average_checkpoints(opt), lofi::Error);  // without --min-inputs, all must be there
  EXPECT_FALSE(fs::exists(opt.out));
  opt.min_inputs = 3;
  std::string error = test::error_of([&] { average_checkpoints(opt); });
  EXPECT_NE(error.find("only 2 of 4"), std::string::npos) << error;
  EXPECT_NE(error.find("in2.safetensors"), std::string::npos) << error;
  EXPECT_NE(error.find("never-written.safetensors"), std::string::npos) << error;
  opt.min_inputs = 2;
  AverageResult r = average_checkpoints(opt);
  EXPECT_EQ(r.used, (std::vector<std::string>{paths[0], paths[1]}));
  ASSERT_EQ(r.skipped.size(), 2u);
  io::SafetensorsFile avg(opt.out);
  EXPECT_TRUE(torch::allclose(avg.load("layers.0.fc.bias"),
                              (random_weights(0)[2].second + random_weights(1)[2].second) / 2));
  EXPECT_EQ(avg.metadata().at("lofi.merge.inputs"), "2");
  auto provenance = nlohmann::json::parse(avg.metadata().at("lofi.merge.input.1"));
  EXPECT_EQ(provenance["path"], paths[1]);
  EXPECT_EQ(provenance["weight"], "0.5");
  EXPECT_EQ(provenance["xxh3"].get<std::string>().size(), 16u);
  EXPECT_NE(avg.metadata().at("lofi.merge.skipped.0").find("in2.safetensors"), std::string::npos);
}

TEST(Average, RunDirectoriesNameTheirMissingNodes) {
  std::string dir = test::scratch_dir();
  fs::create_directories(dir + "/run/node-00");
  fs::create_directories(dir + "/run/node-01");
  std::ofstream(dir + "/run/config.toml") << "[dist]\nnodes = 3\n";
  io::save_safetensors(dir + "/run/node-00/final.safetensors", random_weights(0));
  io::save_safetensors(dir + "/run/node-01/final.safetensors", random_weights(1));
  EXPECT_EQ(expand_inputs({dir + "/run"}).size(), 3u);
  AverageOptions opt;
  opt.inputs = {dir + "/run"};
  opt.out = dir + "/avg.safetensors";
  EXPECT_NE(test::error_of([&] { average_checkpoints(opt); }).find("node-02"), std::string::npos);
  opt.min_inputs = 2;
  EXPECT_EQ(average_checkpoints(opt).used.size(), 2u);
}

TEST(Average, ShardedOutputEqualsTheSingleFile) {
  std::string dir = test::scratch_dir();
  auto paths = write_inputs(dir, 2);
  AverageOptions opt;
  opt.inputs = paths;
  opt.out = dir + "/single.safetensors";
  average_checkpoints(opt);
  opt.out = dir + "/sharded/";  // a trailing slash names the same directory
  opt.shard_bytes = 2048;
  AverageResult r = average_checkpoints(opt);
  EXPECT_GT(r.outputs.size(), 2u);
  auto index = nlohmann::json::parse(std::ifstream(dir + "/sharded/model.safetensors.index.json"));
  io::SafetensorsFile single(dir + "/single.safetensors");
  EXPECT_EQ(index["weight_map"].size(), single.entries().size());
  EXPECT_EQ(index["metadata"]["total_size"].get<size_t>(), single.data_bytes());
  for (const auto& e : single.entries()) {
    io::SafetensorsFile shard(dir + "/sharded/" + index["weight_map"][e.name].get<std::string>());
    EXPECT_TRUE(torch::equal(shard.load(e.name), single.load(e))) << e.name;
  }
  EXPECT_THROW(average_checkpoints(opt), lofi::Error);  // will not overwrite a directory
}

TEST(Average, ShardedInputsAverageLikeTheirSingleFiles) {
  std::string dir = test::scratch_dir();
  auto paths = write_inputs(dir, 2);
  AverageOptions opt;
  opt.inputs = paths;
  opt.out = dir + "/single.safetensors";
  average_checkpoints(opt);
  // Each input resharded: one as a directory, one through its index.json.
  for (size_t i = 0; i < 2; ++i) {
    AverageOptions copy;
    copy.inputs = {paths[i]};
    copy.out = dir + "/in" + std::to_string(i);
    copy.shard_bytes = 1024;
    average_checkpoints(copy);
  }
  opt.inputs = {dir + "/in0", dir + "/in1/model.safetensors.index.json"};
  opt.out = dir + "/from-shards.safetensors";
  AverageResult r = average_checkpoints(opt);
  ASSERT_EQ(r.used.size(), 2u);
  io::SafetensorsFile single(dir + "/single.safetensors"), from_shards(dir + "/from-shards.safetensors");
  for (const auto& e : single.entries()) EXPECT_TRUE(torch::equal(from_shards.load(e.name), single.load(e))) << e.name;
  // The provenance names the index and each shard's checksum.
  auto input1 = nlohmann::json::parse(from_shards.metadata().at("lofi.merge.input.1"));
  EXPECT_NE(input1["path"].get<std::string>().find("model.safetensors.index.json"), std::string::npos);
  EXPECT_NE(input1["xxh3"].get<std::string>().find('+'), std::string::npos);
}

TEST(Average, AFailedMergeLeavesNothing) {
  std::string dir = test::scratch_dir();
  auto paths = write_inputs(dir, 2);
  auto other = random_weights(1);
  other.back().second = torch::tensor({8}, torch::kInt64);  // integer tensors must agree
  io::save_safetensors(paths[1], other);
  for (int64_t shard : {0, 1024}) {
    AverageOptions opt;
    opt.inputs = paths;
    opt.out = dir + (shard ? "/sharded" : "/avg.safetensors");
    opt.shard_bytes = shard;
    EXPECT_NE(test::error_of([&] { average_checkpoints(opt); }).find("'step' differs"), std::string::npos);
  }
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir)) left.push_back(e.path().filename().string());
  EXPECT_EQ(left.size(), 2u) << "left behind: " << (left.size() > 2 ? left[2] : "");
}

// Merges check what they merge: a 6-step model and a 4-step one, or a baseline and a lo-fi node,
// are named and refused unless --force.
TEST(CliAverage, InputsTrainedApartAreRefused) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto train = [&](const std::string& run, const std::string& extra) {
    return test::run_lofi("train " + test::tiny_train_flags(data, dir + "/" + run) + " " + extra);
  };
  ASSERT_EQ(train("six", "").status, 0);
  ASSERT_EQ(train("four", "--set train.steps=4").status, 0);
  const std::string six = dir + "/six/node-00/final.safetensors", four = dir + "/four/node-00/final.safetensors";
  auto refused = test::run_lofi("average " + six + " " + four + " --out " + dir + "/avg.safetensors");
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.output.find(six + " has lofi.step = 6 but " + four + " has 4"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("--force"), std::string::npos) << refused.output;
  EXPECT_FALSE(fs::exists(dir + "/avg.safetensors"));
  EXPECT_EQ(test::run_lofi("average " + six + " " + four + " --force --out " + dir + "/avg.safetensors").status, 0);
  // A dist.node_id job wrote node 0 of 2 only: the run's node count comes from that node's config.
  ASSERT_EQ(train("split", "--set dist.nodes=2 --set dist.node_id=0").status, 0);
  auto partial = test::run_lofi("average " + dir + "/split --out " + dir + "/split.safetensors");
  EXPECT_NE(partial.status, 0);
  EXPECT_NE(partial.output.find("node-01/final.safetensors"), std::string::npos) << partial.output;
  EXPECT_EQ(test::run_lofi("average " + dir + "/split --min-inputs 1 --out " + dir + "/split.safetensors").status, 0);
  // Same steps and nodes, another learning rate and seed: the settings that differ are named.
  ASSERT_EQ(train("hot", "--set train.lr=0.001 --set train.seed=3").status, 0);
  const std::string hot = dir + "/hot/node-00/final.safetensors";
  auto other = test::run_lofi("average " + six + " " + hot + " --out " + dir + "/hot.safetensors");
  EXPECT_NE(other.status, 0);
  EXPECT_NE(other.output.find(hot + " was trained with other settings than " + six + ": train.lr = 0.0003 -> 0.001, "
                              "train.seed = 0 -> 3"), std::string::npos) << other.output;
  EXPECT_EQ(test::run_lofi("average " + six + " " + hot + " --force --out " + dir + "/hot.safetensors").status, 0);
  // Logging, devices and where the run went are not training settings.
  ASSERT_EQ(train("chatty", "--set train.log_every=1 --set train.threads=2").status, 0);
  EXPECT_EQ(test::run_lofi("average " + six + " " + dir + "/chatty/node-00/final.safetensors --out " + dir + "/c.safetensors").status, 0);
}

}  // namespace
}  // namespace lofi::merge
