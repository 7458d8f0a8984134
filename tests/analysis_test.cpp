// Soups, interpolation and ensembles: the analyses that say whether averaging is safe.
#include <gtest/gtest.h>

#include "lofi/data/token_shards.h"
#include "lofi/family/lm_evaluator.h"
#include "lofi/family/lm_model.h"
#include "lofi/io/safetensors.h"
#include "lofi/merge/interpolate.h"
#include "lofi/merge/soup.h"
#include "lofi/model/weights.h"
#include "lofi/train/trainer.h"
#include "test_util.h"

namespace lofi {
namespace {

TEST(Soup, LeavesOutTheCandidateThatHurts) {
  std::string dir = test::scratch_dir();
  torch::Tensor target = torch::linspace(-1, 1, 8);
  // Two good candidates on either side of the target (their average hits it) and one far off.
  std::vector<std::string> paths;
  for (auto [name, offset] : std::vector<std::pair<std::string, double>>{{"far", 5.0}, {"above", 0.1}, {"below", -0.1}}) {
    paths.push_back(dir + "/" + name + ".safetensors");
    io::save_safetensors(paths.back(), {{"w", target + offset}});
  }
  auto score = [&](const io::NamedTensors& w) { return (w[0].second - target).pow(2).mean().item<double>(); };
  merge::SoupResult soup = merge::greedy_soup(paths, score);
  EXPECT_EQ(soup.chosen, (std::vector<std::string>{paths[1], paths[2]}));
  EXPECT_LT(soup.score, 1e-10);
  ASSERT_EQ(soup.steps.size(), 3u);
  EXPECT_EQ(soup.steps[2].candidate, paths[0]);  // ranked last, tried, refused
  EXPECT_FALSE(soup.steps[2].kept);
  EXPECT_GT(soup.steps[2].with, soup.score);
}

TEST(Interpolate, BarrierHeightOfAConstructedLine) {
  std::vector<merge::LinePoint> line{{0.0, {{"loss", 1.0}}}, {0.5, {{"loss", 2.5}}}, {1.0, {{"loss", 2.0}}}};
  EXPECT_DOUBLE_EQ(merge::barrier_height(line, "loss"), 1.0);  // 2.5 above the chord's 1.5
  line[1].metrics["loss"] = 1.2;
  EXPECT_DOUBLE_EQ(merge::barrier_height(line, "loss"), 0.0);
}

class LmAnalysis : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::scratch_dir();
    data = test::write_corpus(dir, "general", 4000);
    config.model.n_layer = 1;
    config.model.n_head = 2;
    config.model.d_model = 16;
    config.model.d_ff = 32;
    config.model.max_seq_len = 16;
    config.data.seq_len = 16;
    for (int seed : {1, 2}) {
      model::CausalLm gpt = family::make_lm(config.model, static_cast<uint64_t>(seed));
      paths.push_back(dir + "/m" + std::to_string(seed) + ".safetensors");
      io::save_safetensors(paths.back(), model::module_weights(*gpt));
    }
  }
  std::string dir, data;
  train::Config config;
  std::vector<std::string> paths;
};

TEST_F(LmAnalysis, InterpolationEndpointsEqualTheirOwnEvaluation) {
  family::LmEvaluator evaluator(config, {{"general", data}}, {});
  io::NamedTensors a = io::SafetensorsFile(paths[0]).load_all(), b = io::SafetensorsFile(paths[1]).load_all();
  auto line = merge::evaluate_line(a, b, 5, [&](const io::NamedTensors& w) { return evaluator.losses(w); });
  ASSERT_EQ(line.size(), 5u);
  EXPECT_DOUBLE_EQ(line[2].alpha, 0.5);
  EXPECT_EQ(line.front().metrics.at("loss/general"), evaluator.score_file(paths[0])[0].loss);
  EXPECT_EQ(line.back().metrics.at("loss/general"), evaluator.score_file(paths[1])[0].loss);
  EXPECT_NE(line[2].metrics.at("loss/general"), line.front().metrics.at("loss/general"));
}

TEST_F(LmAnalysis, EnsembleIsTheMeanOfProbabilities) {
  family::LmEvaluator evaluator(config, {{"general", data}}, {});
  double alone = evaluator.score_file(paths[0])[0].loss, other = evaluator.score_file(paths[1])[0].loss;
  // An ensemble of one model, twice, is that model.
  EXPECT_NEAR(evaluator.score_ensemble({paths[0], paths[0]})[0].loss, alone, 1e-6);
  // -log of a mean probability is at most the mean of -log probabilities (Jensen), strictly here.
  EXPECT_LT(evaluator.score_ensemble({paths[0], paths[1]})[0].loss, (alone + other) / 2);
}

}  // namespace
}  // namespace lofi
