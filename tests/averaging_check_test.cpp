// The averaging check at the end of a lo-fi job: judged on the numbers it is given, either way a
// metric runs, and run for real by a lo-fi job with data.val.
#include "lofi/train/averaging_check.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "test_util.h"

namespace lofi::train {
namespace {

std::function<nlohmann::json(const std::string&)> scores(const std::map<std::string, nlohmann::json>& by_path) {
  return [by_path](const std::string& path) { return by_path.at(path); };
}

TEST(AveragingCheck, LossLowerIsBetter) {
  const std::vector<NodeFinal> finals{{0, "n0"}, {1, "n1"}};
  auto beats = check_averaging(finals, "avg", scores({{"avg", {{"val_loss", 1.0}}}, {"n0", {{"val_loss", 1.2}}},
                                                      {"n1", {{"val_loss", 1.1}}}}), 8);
  EXPECT_TRUE(beats["beats_every_node"]);
  EXPECT_TRUE(beats["beats_mean_node"]);
  EXPECT_NEAR(beats["margin_over_best"].get<double>(), 0.1, 1e-12);
  EXPECT_NEAR(beats["mean_node"].get<double>(), 1.15, 1e-12);
  EXPECT_NE(averaging_check_text(beats).find("the average beats every node, by 0.1000 over the best"), std::string::npos);
  auto between = check_averaging(finals, "avg", scores({{"avg", {{"val_loss", 1.12}}}, {"n0", {{"val_loss", 1.2}}},
                                                        {"n1", {{"val_loss", 1.1}}}}), 8);
  EXPECT_FALSE(between["beats_every_node"]);
  EXPECT_TRUE(between["beats_mean_node"]);
  const std::string text = averaging_check_text(between);
  EXPECT_NE(text.find("does NOT beat every node (it beats the mean node by 0.0300)"), std::string::npos) << text;
  EXPECT_NE(text.find("lower train.lr"), std::string::npos) << text;
}

// One finished node is its own average, and a tie is no harm: neither is called unsafe.
TEST(AveragingCheck, OneNodeAndATieAreNoVerdictAgainstAveraging) {
  auto one = check_averaging({{0, "n0"}}, "avg", scores({{"avg", {{"val_loss", 1.0}}}, {"n0", {{"val_loss", 1.0}}}}), 8);
  EXPECT_TRUE(one["single_node"]);
  std::string text = averaging_check_text(one);
  EXPECT_NE(text.find("one node finished"), std::string::npos) << text;
  EXPECT_EQ(text.find("not safe"), std::string::npos) << text;
  auto tie = check_averaging({{0, "n0"}, {1, "n1"}}, "avg",
                             scores({{"avg", {{"val_loss", 1.0}, {"val_acc", 0.75}}}, {"n0", {{"val_loss", 1.1}, {"val_acc", 0.75}}},
                                     {"n1", {{"val_loss", 1.2}, {"val_acc", 0.5}}}}),
                             8);
  EXPECT_TRUE(tie["ties_best_node"]);
  text = averaging_check_text(tie);
  EXPECT_NE(text.find("the average ties the best node and beats the mean node"), std::string::npos) << text;
  EXPECT_EQ(text.find("not safe"), std::string::npos) << text;
}

TEST(AveragingCheck, TopOneHigherIsBetter) {
  const std::vector<NodeFinal> finals{{0, "n0"}, {1, "n1"}, {2, "n2"}};
  auto c = check_averaging(finals, "avg",
                           scores({{"avg", {{"val_loss", 0.9}, {"val_top1", 0.30}}}, {"n0", {{"val_loss", 1.0}, {"val_top1", 0.31}}},
                                   {"n1", {{"val_loss", 1.0}, {"val_top1", 0.25}}}, {"n2", {{"val_loss", 1.0}, {"val_top1", 0.26}}}}),
                           4);
  EXPECT_EQ(c["metric"], "top-1");
  EXPECT_FALSE(c["beats_every_node"]);  // 30% against the best node's 31%, though its loss is lower
  EXPECT_TRUE(c["beats_mean_node"]);
  EXPECT_NE(averaging_check_text(c).find("average 30.00; nodes 0 31.00, 1 25.00, 2 26.00"), std::string::npos)
      << averaging_check_text(c);
}

TEST(CliAveragingCheck, ALofiJobChecksItsAverage) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto r = test::run_lofi("launch --workers 2 -- train " + test::tiny_train_flags(data, dir + "/run") +
                          " --set dist.nodes=2 --set data.val=" + data + " --set train.eval_batches=2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("averaging check (validation loss, 2 batches of data.val): average "), std::string::npos) << r.output;
  std::ifstream in(dir + "/run/averaging-check.json");
  ASSERT_TRUE(in) << r.output;
  const auto check = nlohmann::json::parse(in);
  ASSERT_EQ(check["nodes"].size(), 2u);
  const double a = check["average"], n0 = check["nodes"]["0"], n1 = check["nodes"]["1"];
  EXPECT_NE(n0, n1);  // two nodes trained apart
  EXPECT_EQ(check["beats_every_node"].get<bool>(), a < std::min(n0, n1));
  // The same run directory started over without data.val keeps no verdict of the earlier run.
  auto again = test::run_lofi("launch --workers 2 -- train " + test::tiny_train_flags(data, dir + "/run") +
                              " --set dist.nodes=2 --overwrite");
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/run/averaging-check.json"));
  // Without data.val the job says it did not check.
  auto unchecked = test::run_lofi("launch --workers 2 -- train " + test::tiny_train_flags(data, dir + "/bare") + " --set dist.nodes=2");
  ASSERT_EQ(unchecked.status, 0) << unchecked.output;
  EXPECT_NE(unchecked.output.find("averaging check: no data.val"), std::string::npos) << unchecked.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/bare/averaging-check.json"));
}

}  // namespace
}  // namespace lofi::train
