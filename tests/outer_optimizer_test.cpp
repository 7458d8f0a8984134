// DiLoCo's outer step against the update written out by hand (DiLoCo, Algorithm 1, with PyTorch's
// SGD Nesterov convention), over several syncs and across a save and load of its state.
#include "lofi/train/outer_optimizer.h"

#include <gtest/gtest.h>

#include "lofi/io/safetensors.h"
#include "test_util.h"

namespace lofi::train {
namespace {

std::vector<NamedParam> tiny_model() {
  torch::manual_seed(0);
  return {{"w", torch::randn({3, 4})}, {"b", torch::randn({4})}};
}

// What the nodes might average to after some inner steps from ANCHOR.
void move_to_a_mean(std::vector<NamedParam>& params, const std::vector<torch::Tensor>& anchor) {
  for (size_t k = 0; k < params.size(); ++k) params[k].param.copy_(anchor[k] + 0.1 * torch::randn_like(anchor[k]));
}

TEST(OuterOptimizer, NesterovStepEqualsTheUpdateByHand) {
  auto params = tiny_model();
  const double lr = 0.7, mu = 0.9;
  OuterOptimizer outer(params, lr, mu);
  std::vector<torch::Tensor> anchor, momentum(params.size());
  for (const auto& p : params) anchor.push_back(p.param.clone());
  for (int sync = 0; sync < 4; ++sync) {
    move_to_a_mean(params, anchor);
    std::vector<torch::Tensor> mean;
    for (const auto& p : params) mean.push_back(p.param.clone());
    outer.step(params);
    for (size_t k = 0; k < params.size(); ++k) {
      const torch::Tensor g = anchor[k] - mean[k];                       // the pseudo-gradient
      momentum[k] = sync == 0 ? g.clone() : mu * momentum[k] + g;        // the buffer starts as g
      anchor[k] = anchor[k] - lr * (g + mu * momentum[k]);               // Nesterov
      EXPECT_TRUE(torch::allclose(params[k].param, anchor[k], 1e-6, 1e-6)) << params[k].name << " at sync " << sync;
    }
  }
  // The state carries on exactly: a fresh optimizer loaded from it takes the same next step.
  const std::string file = test::scratch_dir() + "/outer.safetensors";
  io::save_safetensors(file, outer.state(), {});
  std::vector<NamedParam> copy;
  for (const auto& p : params) copy.push_back({p.name, p.param.clone()});
  OuterOptimizer resumed(copy, lr, mu);
  resumed.load_state(io::SafetensorsFile(file));
  move_to_a_mean(params, anchor);
  for (size_t k = 0; k < params.size(); ++k) copy[k].param.copy_(params[k].param);
  outer.step(params);
  resumed.step(copy);
  for (size_t k = 0; k < params.size(); ++k) EXPECT_TRUE(torch::equal(params[k].param, copy[k].param)) << params[k].name;
}

TEST(OuterOptimizer, RateOneWithoutMomentumIsPlainAveraging) {
  auto params = tiny_model();
  OuterOptimizer outer(params, 1.0, 0.0);
  std::vector<torch::Tensor> anchor;
  for (const auto& p : params) anchor.push_back(p.param.clone());
  move_to_a_mean(params, anchor);
  std::vector<torch::Tensor> mean;
  for (const auto& p : params) mean.push_back(p.param.clone());
  outer.step(params);
  for (size_t k = 0; k < params.size(); ++k) EXPECT_TRUE(torch::allclose(params[k].param, mean[k], 0, 1e-6));
}

TEST(OuterOptimizer, RefusesACheckpointWithoutItsState) {
  auto params = tiny_model();
  const std::string file = test::scratch_dir() + "/adamw-only.safetensors";
  io::save_safetensors(file, {{"w.exp_avg", torch::zeros({3, 4})}}, {});
  OuterOptimizer outer(params, 0.7, 0.9);
  EXPECT_NE(test::error_of([&] { outer.load_state(io::SafetensorsFile(file)); })
                .find("was not written with dist.outer_optimizer = \"nesterov\""),
            std::string::npos);
}

}  // namespace
}  // namespace lofi::train
