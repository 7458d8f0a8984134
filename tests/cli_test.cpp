// The CLI as a user meets it: help on every subcommand, and what the merges write. Bad input has
// its own table: hostile_test.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <cmath>
#include <fstream>
#include <sstream>
#include <algorithm>
#include <nlohmann/json.hpp>

#include "lofi/io/safetensors.h"
#include "test_util.h"

namespace lofi {
namespace {

using test::run_lofi;

// The subcommands `lofi --help` lists: the lines under "Subcommands:".
std::vector<std::string> listed_subcommands() {
  const std::string help = run_lofi("--help").output;
  std::vector<std::string> names;
  std::istringstream lines(help.substr(help.find("Subcommands:")));
  std::string line;
  std::getline(lines, line);
  while (std::getline(lines, line) && line.rfind("  ", 0) == 0) names.push_back(line.substr(2, line.find(' ', 2) - 2));
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Cli, HelpOnEverySubcommand) {
  EXPECT_EQ(run_lofi("--help").status, 0);
  EXPECT_NE(run_lofi("--version").output.find("lofi "), std::string::npos);
  // Every file of apps/lofi/commands/ is a registered subcommand, and --help lists them all.
  std::vector<std::string> files;
  for (const auto& f : std::filesystem::directory_iterator(std::string(LOFI_FIXTURES) + "/../../apps/lofi/commands"))
    if (f.path().extension() == ".cpp") files.push_back(f.path().stem().string());
  std::sort(files.begin(), files.end());
  EXPECT_GE(files.size(), 13u);
  EXPECT_EQ(listed_subcommands(), files);
  for (const auto& sub : files) {
    auto r = run_lofi(sub + " --help");
    EXPECT_EQ(r.status, 0) << sub;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << sub;
  }
  // train's help lists every config key with its default.
  const std::string train_help = run_lofi("train --help").output;
  for (const char* key : {"train.lr = 0.0003", "dist.nodes = 1", "images.hflip = 0.5", "model.rope_theta = 10000.0"})
    EXPECT_NE(train_help.find(key), std::string::npos) << key;
}

TEST(Cli, AverageOfIdenticalFilesIsExact) {
  std::string dir = test::scratch_dir();
  torch::manual_seed(3);
  io::NamedTensors t{{"a", torch::randn({17, 3})}, {"b", torch::randn({5}).to(torch::kBFloat16)}, {"n", torch::arange(4)}};
  io::save_safetensors(dir + "/x.safetensors", t);
  auto r = run_lofi("average " + dir + "/x.safetensors " + dir + "/x.safetensors " + dir + "/x.safetensors --out " +
                    dir + "/avg.safetensors");
  ASSERT_EQ(r.status, 0) << r.output;
  io::SafetensorsFile avg(dir + "/avg.safetensors");
  for (const auto& [name, tensor] : t) EXPECT_TRUE(torch::equal(avg.load(name), tensor)) << name;
}

TEST(Cli, AverageWeightsAreNormalised) {
  std::string dir = test::scratch_dir();
  io::save_safetensors(dir + "/a.safetensors", {{"w", torch::full({3}, 1.0)}});
  io::save_safetensors(dir + "/b.safetensors", {{"w", torch::full({3}, 5.0)}});
  auto r = run_lofi("average " + dir + "/a.safetensors " + dir + "/b.safetensors --weights 3,1 --out " + dir + "/o.safetensors");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(torch::allclose(io::SafetensorsFile(dir + "/o.safetensors").load("w"), torch::full({3}, 2.0)));
}

TEST(Cli, EvalAndInspectATrainedModel) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000),
              sums = test::write_corpus(dir, "sums", 5000);
  auto t = run_lofi("train " + test::tiny_train_flags(data, dir + "/run") + " --set data.val=" + sums +
                    " --set train.eval_every=3 --set train.eval_batches=2");
  ASSERT_EQ(t.status, 0) << t.output;
  // Periodic evaluation lands in the metrics at its own interval (3), off the log interval (2).
  std::ifstream metrics(dir + "/run/node-00/metrics.jsonl");
  std::vector<int64_t> evaluated;
  for (std::string line; std::getline(metrics, line);) {
    auto record = nlohmann::json::parse(line);
    if (record.contains("val_loss")) evaluated.push_back(record["step"]);
  }
  EXPECT_EQ(evaluated, (std::vector<int64_t>{3, 6}));
  std::string model = dir + "/run/node-00/final.safetensors";
  auto e = run_lofi("eval --model " + model + " --data general=" + data + " --data sums=" + sums + " --max-windows 20 --json " +
                    dir + "/eval.json");
  ASSERT_EQ(e.status, 0) << e.output;
  EXPECT_NE(e.output.find("general ppl"), std::string::npos) << e.output;
  auto json = nlohmann::json::parse(std::ifstream(dir + "/eval.json"));
  ASSERT_EQ(json["results"].size(), 1u);
  double ppl_general = json["results"][0]["datasets"]["general"]["perplexity"];
  double ppl_sums = json["results"][0]["datasets"]["sums"]["perplexity"];
  EXPECT_GT(ppl_general, 1.0);
  EXPECT_LT(ppl_general, 256.0);                   // learned something of the training corpus
  EXPECT_GT(ppl_sums, ppl_general);                // a shifted corpus scores worse
  // A second model from another seed: the line between two different models, the soup and the
  // ensemble of the two, checked against separate evaluations of each.
  ASSERT_EQ(run_lofi("train " + test::tiny_train_flags(data, dir + "/other") + " --set train.seed=7").status, 0);
  const std::string other = dir + "/other/node-00/final.safetensors";
  auto loss_of = [&](const std::string& m) {
    auto r = run_lofi("eval --model " + m + " --data general=" + data + " --max-windows 8 --json " + dir + "/one.json");
    EXPECT_EQ(r.status, 0) << r.output;
    return nlohmann::json::parse(std::ifstream(dir + "/one.json"))["results"][0]["datasets"]["general"]["loss"].get<double>();
  };
  const double loss_a = loss_of(model), loss_b = loss_of(other);
  ASSERT_GT(std::abs(loss_a - loss_b), 1e-6);
  auto line = run_lofi("interpolate " + model + " " + other + " --points 3 --data general=" + data +
                      " --max-windows 8 --json " + dir + "/line.json");
  ASSERT_EQ(line.status, 0) << line.output;
  auto points = nlohmann::json::parse(std::ifstream(dir + "/line.json"))["points"];
  ASSERT_EQ(points.size(), 3u);
  EXPECT_DOUBLE_EQ(points[0]["alpha"].get<double>(), 0.0);
  EXPECT_NEAR(points[0]["metrics"]["loss/general"].get<double>(), loss_a, 1e-6);  // the endpoints are the models
  EXPECT_NEAR(points[2]["metrics"]["loss/general"].get<double>(), loss_b, 1e-6);
  auto barrier = nlohmann::json::parse(std::ifstream(dir + "/line.json"))["barrier"]["loss/general"].get<double>();
  EXPECT_NEAR(barrier, std::max(0.0, points[1]["metrics"]["loss/general"].get<double>() - (loss_a + loss_b) / 2), 1e-9);
  auto soup = run_lofi("soup " + model + " " + other + " --data general=" + data + " --max-windows 8 --out " + dir + "/soup.safetensors");
  ASSERT_EQ(soup.status, 0) << soup.output;
  EXPECT_NE(soup.output.find("greedy soup of"), std::string::npos) << soup.output;
  // The soup starts from the better model and never ends worse than it.
  EXPECT_LE(loss_of(dir + "/soup.safetensors"), std::min(loss_a, loss_b) + 1e-9);
  auto ens = run_lofi("eval --ensemble " + model + " " + other + " --data general=" + data + " --max-windows 8 --json " +
                      dir + "/ens.json");
  ASSERT_EQ(ens.status, 0) << ens.output;
  EXPECT_NE(ens.output.find("weight average of 2"), std::string::npos) << ens.output;
  auto rows = nlohmann::json::parse(std::ifstream(dir + "/ens.json"))["results"];
  ASSERT_EQ(rows.size(), 4u);  // each member, their ensemble, their weight average
  EXPECT_NEAR(rows[0]["datasets"]["general"]["loss"].get<double>(), loss_a, 1e-6);
  EXPECT_NEAR(rows[1]["datasets"]["general"]["loss"].get<double>(), loss_b, 1e-6);
  // Mean probabilities: by Jensen the ensemble's loss is at most the members' mean loss.
  EXPECT_LE(rows[2]["datasets"]["general"]["loss"].get<double>(), (loss_a + loss_b) / 2 + 1e-9);
  auto i = run_lofi("inspect " + model);
  ASSERT_EQ(i.status, 0) << i.output;
  EXPECT_NE(i.output.find("model.decoder.layers.1.fc2.weight"), std::string::npos);
  EXPECT_NE(i.output.find("F32"), std::string::npos);
}

}  // namespace
}  // namespace lofi
