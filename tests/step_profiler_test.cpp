// train.profile_steps (train/step_profiler.h): which steps are profiled, how time is attributed to
// operators, and what a training run writes and prints.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lofi/train/step_profiler.h"
#include "test_util.h"

namespace lofi {
namespace {

TEST(StepProfiler, ShortKernelNamesDropTemplatesAndArguments) {
  EXPECT_EQ(train::short_kernel_name("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>(int, "
                                     "at::native::FillFunctor<float>, std::array<char*, 1ul>)"),
            "at::native::vectorized_elementwise_kernel");
  EXPECT_EQ(train::short_kernel_name("nvjet_sm90_tst_128x256_64x4_2x1_v_bz_coopB_NNT"), "nvjet_sm90_tst_128x256_64x4_2x1_v_bz_coopB_NNT");
  EXPECT_EQ(train::short_kernel_name(std::string(100, 'k')).size(), 60u);
  EXPECT_EQ(train::short_kernel_name("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<float>(int)"),
            "at::native::multi_tensor_apply_kernel");
}

TEST(StepProfiler, ProfilesTheChosenStepsAndAttributesSelfTime) {
  const std::string dir = test::scratch_dir();
  train::StepProfiler profiler(torch::kCPU, /*first=*/1, /*steps=*/2, dir + "/profile/trace.json");
  torch::Tensor a = torch::randn({512, 512}), w = torch::randn({512, 512}), b = torch::randn({512});
  for (int64_t step = 0; step < 4; ++step) {
    profiler.before_step(step);
    // Per step: 3 matrix products, 2 of them addmm (linear with a bias), then relu (which calls clamp_min).
    torch::Tensor y = torch::mm(a, w);
    for (int i = 0; i < 2; ++i) y = torch::nn::functional::linear(y, w, b);
    y = y.relu();
    profiler.after_step(step);
    EXPECT_EQ(profiler.done(), step >= 2) << "step " << step;
  }
  const train::ProfileSummary& s = profiler.summary();
  EXPECT_EQ(s.device, "cpu");
  EXPECT_EQ(s.steps, 2);
  ASSERT_FALSE(s.rows.empty());
  double shares = 0;
  std::map<std::string, double> calls;
  for (const auto& r : s.rows) shares += r.share, calls[r.op] = r.calls_per_step;
  EXPECT_NEAR(shares, 1.0, 1e-9);
  EXPECT_EQ(calls["aten::mm"], 1.0);  // per step, over the two profiled steps only
  EXPECT_EQ(calls["aten::addmm"], 2.0);
  EXPECT_EQ(calls["aten::relu"], 1.0);
  EXPECT_EQ(calls["aten::clamp_min"], 1.0);
  // Self time: the products dominate; relu's own time excludes the clamp_min it calls.
  double product_share = 0, relu_share = 0, clamp_share = 0;
  for (const auto& r : s.rows) {
    if (r.op == "aten::mm" || r.op == "aten::addmm") product_share += r.share;
    if (r.op == "aten::relu") relu_share = r.share;
    if (r.op == "aten::clamp_min") clamp_share = r.share;
  }
  EXPECT_GT(product_share, 0.5);
  EXPECT_LT(relu_share, clamp_share);
  // The trace is a Chrome trace with the operators in it.
  std::ifstream in(dir + "/profile/trace.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json trace = nlohmann::json::parse(in);
  int64_t mm = 0;
  for (const auto& e : trace["traceEvents"])
    if (e.value("name", "") == "aten::mm") ++mm;
  EXPECT_EQ(mm, 2);
  const std::string table = train::format_profile(s);
  EXPECT_NE(table.find("profile of 2 steps (cpu)"), std::string::npos) << table;
  EXPECT_NE(table.find("aten::mm"), std::string::npos) << table;
}

TEST(StepProfiler, TrainingWritesTheTraceAndPrintsTheTable) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto r = test::run_lofi("train " + test::tiny_train_flags(data, dir + "/run") + " --set train.profile_steps=2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("profile of 2 steps (cpu)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("aten::"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/run/node-00/profile/trace.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/run/node-00/profile/table.txt"));
  auto bad = test::run_lofi("train " + test::tiny_train_flags(data, dir + "/bad") + " --set train.profile_steps=-1");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("train.profile_steps must be >= 0"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace lofi
