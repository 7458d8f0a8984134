// lofi merge's methods: each equals mergekit's merge of the same inputs with the same parameters
// (fixtures/merge/mergekit_reference.py makes both the models and mergekit's merges), and the
// engine refuses what a method cannot do, naming the flag.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lofi/error.h"
#include "lofi/io/safetensors.h"
#include "lofi/merge/engine.h"
#include "test_util.h"

namespace lofi::merge {
namespace {

namespace fs = std::filesystem;

std::string quoted(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) out += " '" + a + "'";
  return out;
}

TEST(MergeGolden, EveryMethodMatchesMergekit) {
  const std::string dir = test::scratch_dir();
  test::CommandResult made = test::run_python("merge/mergekit_reference.py", dir);
  ASSERT_EQ(made.status, 0) << made.output;
  // The script's last line: each case's lofi merge flags.
  std::istringstream lines(made.output);
  std::string line, last;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] == '{') last = line;
  const nlohmann::json cases = nlohmann::json::parse(last);
  ASSERT_EQ(cases.size(), 6u);
  for (const auto& [name, flags] : cases.items()) {
    const std::string out = dir + "/lofi-" + name;
    test::CommandResult merged = test::run_lofi("merge" + quoted(flags.get<std::vector<std::string>>()) + " --out " + out);
    ASSERT_EQ(merged.status, 0) << name << ": " << merged.output;
    const std::string ours = out + "/model.safetensors", theirs = dir + "/mergekit-" + name + "/model.safetensors";
    EXPECT_LE(test::max_abs_diff(ours, theirs), 1e-6) << name;
    // Not trivially equal: the merge moved away from every input (and the base).
    for (const char* model : {"a", "b", "base"}) EXPECT_GT(test::max_abs_diff(ours, dir + "/" + model + "/model.safetensors"), 1e-3) << name;
  }
}

io::NamedTensors model(int seed) {
  torch::manual_seed(seed);
  return {{"big", torch::randn({3, 500001})},  // spans several streaming chunks
          {"w", torch::randn({16, 8})},
          {"step", torch::tensor({5}, torch::kInt64)}};
}

std::vector<std::string> write_models(const std::string& dir, int n) {
  std::vector<std::string> paths;
  for (int i = 0; i <= n; ++i) {  // model 0 is the base
    paths.push_back(dir + "/m" + std::to_string(i) + ".safetensors");
    io::save_safetensors(paths.back(), model(i));
  }
  return paths;
}

TEST(MergeEngine, TaskArithmeticAtOneOverNIsTheAverage) {
  const std::string dir = test::scratch_dir();
  auto paths = write_models(dir, 3);
  MergeOptions average;
  average.inputs = {paths[1], paths[2], paths[3]};
  average.out = dir + "/average.safetensors";
  merge_checkpoints(average);
  MergeOptions arithmetic = average;
  arithmetic.method = "task-arithmetic";
  arithmetic.base = paths[0];
  arithmetic.params.lambda = 1.0 / 3;
  arithmetic.out = dir + "/arithmetic.safetensors";
  merge_checkpoints(arithmetic);
  EXPECT_LE(test::max_abs_diff(average.out, arithmetic.out), 1e-5);
  // A base in half precision (as pretrained models are published) under fp32 fine-tunes: the same.
  io::NamedTensors half = model(0);
  for (auto& [name, t] : half)
    if (t.is_floating_point()) t = t.to(torch::kFloat16);
  io::save_safetensors(dir + "/base-f16.safetensors", half);
  MergeOptions from_half = arithmetic;
  from_half.base = dir + "/base-f16.safetensors";
  from_half.out = dir + "/from-half.safetensors";
  merge_checkpoints(from_half);
  EXPECT_LE(test::max_abs_diff(average.out, from_half.out), 1e-5);
  io::SafetensorsFile out(arithmetic.out);
  EXPECT_EQ(out.metadata().at("lofi.merge"), "task-arithmetic");
  EXPECT_EQ(nlohmann::json::parse(out.metadata().at("lofi.merge.base"))["path"], paths[0]);
  EXPECT_NEAR(nlohmann::json::parse(out.metadata().at("lofi.merge.params"))["lambda"].get<double>(), 1.0 / 3, 1e-12);
  EXPECT_EQ(out.load("step").item<int64_t>(), 5);
}

TEST(MergeEngine, StreamingEqualsInMemoryForEveryMethod) {
  const std::string dir = test::scratch_dir();
  auto paths = write_models(dir, 2);
  const io::NamedTensors base = model(0), a = model(1), b = model(2);
  MethodParams params;
  params.density = 0.3;
  params.lambda = 0.8;
  params.t = 0.4;
  params.seed = 11;
  for (const std::string& name : method_names()) {
    const Method& method = find_method(name);
    MergeOptions opt;
    opt.method = name;
    opt.inputs = {paths[1], paths[2]};
    opt.weights = {0.7, 0.6};
    opt.params = params;
    if (method.needs_base()) opt.base = paths[0];
    opt.out = dir + "/" + name + ".safetensors";
    opt.threads = 2;
    merge_checkpoints(opt);
    const io::NamedTensors in_memory = merge_in_memory(method, {&a, &b}, opt.weights, params, method.needs_base() ? &base : nullptr);
    // Equal up to the order of summation in whole-tensor norms (the engine sums on one thread).
    io::SafetensorsFile file(opt.out);
    for (const auto& [tensor, values] : in_memory)
      EXPECT_LE((file.load(tensor) - values).abs().max().item<double>(), 1e-6) << name << " " << tensor;
  }
}

// With one input, TIES is the base plus the input's trimmed difference: exactly k = density * n
// survive, the largest by magnitude, and of equal magnitudes the first by index.
TEST(MergeEngine, TiesKeepsExactlyTheLargestDifferences) {
  const Method& ties = find_method("ties");
  MethodParams params;
  params.density = 0.3;
  torch::manual_seed(3);
  const io::NamedTensors base{{"w", torch::randn({1000})}};
  const torch::Tensor delta = torch::randn({1000});
  const io::NamedTensors tuned{{"w", base[0].second + delta}};
  const torch::Tensor kept = merge_in_memory(ties, {&tuned}, {1.0}, params, &base)[0].second - base[0].second;
  const torch::Tensor expected = std::get<1>((tuned[0].second - base[0].second).abs().topk(300));
  EXPECT_EQ(kept.ne(0).sum().item<int64_t>(), 300);
  EXPECT_TRUE(kept.index({expected}).ne(0).all().item<bool>());
  // Every difference of the same magnitude (+-0.5, exact in fp32): the first 300 by index survive.
  const torch::Tensor signs = torch::where(torch::rand({1000}) < 0.5, 0.5, -0.5).to(torch::kFloat32);
  const io::NamedTensors zero{{"w", torch::zeros({1000})}}, flat{{"w", signs}};
  const torch::Tensor trimmed = merge_in_memory(ties, {&flat}, {1.0}, params, &zero)[0].second;
  EXPECT_TRUE(torch::equal(trimmed.narrow(0, 0, 300), signs.narrow(0, 0, 300)));
  EXPECT_EQ(trimmed.narrow(0, 300, 700).ne(0).sum().item<int64_t>(), 0);
}

TEST(MergeEngine, DareIsTheSameOnAnyThreadCountAndDependsOnItsSeed) {
  const std::string dir = test::scratch_dir();
  auto paths = write_models(dir, 2);
  MergeOptions opt;
  opt.method = "dare";
  opt.inputs = {paths[1], paths[2]};
  opt.base = paths[0];
  opt.params.density = 0.5;
  opt.threads = 1;
  opt.out = dir + "/one.safetensors";
  merge_checkpoints(opt);
  opt.threads = 2;
  opt.out = dir + "/two.safetensors";
  merge_checkpoints(opt);
  EXPECT_EQ(test::max_abs_diff(dir + "/one.safetensors", dir + "/two.safetensors"), 0.0);
  opt.params.seed = 1;
  opt.out = dir + "/other-seed.safetensors";
  merge_checkpoints(opt);
  EXPECT_GT(test::max_abs_diff(dir + "/one.safetensors", dir + "/other-seed.safetensors"), 0.0);
}

TEST(MergeEngine, WhatAMethodCannotDoIsNamed) {
  const std::string dir = test::scratch_dir();
  auto paths = write_models(dir, 3);
  auto error = [&](const std::string& method, std::vector<std::string> inputs, const std::string& base, auto set) {
    MergeOptions opt;
    opt.method = method;
    opt.inputs = std::move(inputs);
    opt.base = base;
    opt.out = dir + "/out.safetensors";
    set(opt.params);
    std::string e = test::error_of([&] { merge_checkpoints(opt); });
    EXPECT_FALSE(fs::exists(opt.out)) << e;
    return e;
  };
  auto none = [](MethodParams&) {};
  const std::vector<std::string> two{paths[1], paths[2]}, three{paths[1], paths[2], paths[3]};
  EXPECT_NE(error("ties", two, "", none).find("needs --base"), std::string::npos);
  EXPECT_NE(error("average", two, paths[0], none).find("takes no --base"), std::string::npos);
  EXPECT_NE(error("ties", two, paths[0], [](MethodParams& p) { p.density = 0; }).find("--density must be in (0, 1]"), std::string::npos);
  EXPECT_NE(error("dare", two, paths[0], [](MethodParams& p) { p.density = 1.5; }).find("--density must be in (0, 1]"), std::string::npos);
  EXPECT_NE(error("slerp", three, "", none).find("slerp interpolates two inputs, found 3"), std::string::npos);
  EXPECT_NE(error("slerp", two, "", [](MethodParams& p) { p.t = 2; }).find("--t must be in [0, 1]"), std::string::npos);
  EXPECT_NE(error("model-stock", {paths[1]}, paths[0], none).find("model-stock needs at least 2 fine-tuned inputs"),
            std::string::npos);
  EXPECT_NE(error("mean", two, "", none).find("no merge method 'mean'; lofi has average, dare, model-stock, slerp, task-arithmetic, ties"),
            std::string::npos);
  // A base of another model is named.
  io::save_safetensors(dir + "/other.safetensors", {{"w", torch::zeros({16, 8})}});
  EXPECT_NE(error("ties", two, dir + "/other.safetensors", none).find("--base " + dir + "/other.safetensors is not the inputs' model"),
            std::string::npos);
}

}  // namespace
}  // namespace lofi::merge
