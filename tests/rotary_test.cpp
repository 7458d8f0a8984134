// model/rotary.h against transformers: every rope type's inverse frequencies and attention factor
// (fixtures/hf/rope/cases.json, made by make_rope_fixtures.py), read from config.json as
// transformers 5 writes it and as the hub's files spell it; longrope's switch to its long factors;
// partial rotation; the settings refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "lofi/io/atomic_file.h"
#include "lofi/kernels/rotary.h"
#include "lofi/model/hf.h"
#include "lofi/model/rotary.h"
#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json rope_cases() {
  return json::parse(io::read_text_file((fs::path(LOFI_FIXTURES) / "hf" / "rope" / "cases.json").string()));
}

torch::Tensor floats(const json& list) { return torch::tensor(list.get<std::vector<double>>(), torch::kDouble); }

// The largest |a - b| / |b| over two frequency tables.
double relative_error(const torch::Tensor& a, const json& b) {
  EXPECT_EQ(a.numel(), static_cast<int64_t>(b.size()));
  if (a.numel() != static_cast<int64_t>(b.size())) return 1.0;
  const torch::Tensor want = floats(b);
  return ((a.to(torch::kDouble) - want).abs() / want.abs()).max().item<double>();
}

// config.json as transformers 4 and the hub's files spell it: rope_theta at the top level, the
// rest under rope_scaling ("type" for the kind, as Phi-3's files have it), partial_rotary_factor at
// the top level.
json hub_spelling(json config) {
  json rope = config["rope_parameters"];
  config.erase("rope_parameters");
  config["rope_theta"] = rope["rope_theta"];
  rope.erase("rope_theta");
  if (rope.contains("partial_rotary_factor")) config["partial_rotary_factor"] = rope["partial_rotary_factor"], rope.erase("partial_rotary_factor");
  rope["type"] = rope["rope_type"];
  rope.erase("rope_type");
  config["rope_scaling"] = rope;
  return config;
}

TEST(Rotary, FrequenciesAndAttentionFactorAsTransformersComputesThem) {
  const json cases = rope_cases();
  ASSERT_GE(cases.size(), 8u);
  for (const json& c : cases) {
    for (const bool hub : {false, true}) {
      const std::string name = c["name"].get<std::string>() + (hub ? " (hub spelling)" : "");
      SCOPED_TRACE(name);
      const json config = hub ? hub_spelling(c["config"]) : c["config"];
      const model::LmConfig lm = model::lm_config_from_hf(config, name);
      const model::Rotary r = model::make_rotary(lm);
      const double error = relative_error(r.inv_freq, c["inv_freq"]);
      EXPECT_LE(error, 1e-6);
      EXPECT_NEAR(r.attention_factor, c["attention_factor"].get<double>(), 1e-12);
      if (c.contains("long_inv_freq")) {
        ASSERT_TRUE(r.long_inv_freq.defined());
        EXPECT_LE(relative_error(r.long_inv_freq, c["long_inv_freq"]), 1e-6);
        EXPECT_EQ(r.original_positions, c["config"]["rope_parameters"]["original_max_position_embeddings"].get<int64_t>());
      } else {
        EXPECT_FALSE(r.long_inv_freq.defined());
      }
      if (!hub) std::cout << name << ": max relative error " << error << ", attention factor " << r.attention_factor << "\n";
      // Written back, the rotary settings are transformers' own (its legacy "type" aside), and
      // read again they make the same rotation.
      const json written = json::parse(model::hf_config_json(lm, "float32").dump());
      json want = c["config"]["rope_parameters"];
      want.erase("type");
      EXPECT_EQ(written["rope_parameters"], want);
      const model::Rotary again = model::make_rotary(model::lm_config_from_hf(written, name + " written"));
      EXPECT_TRUE(torch::equal(again.inv_freq, r.inv_freq));
      EXPECT_EQ(again.attention_factor, r.attention_factor);
    }
  }
}

// A longrope model of the first case of that kind, with an original context of ORIGINAL tokens.
model::LmConfig longrope_config(int64_t original) {
  for (const json& c : rope_cases())
    if (c["name"] == "longrope-partial") {
      json config = c["config"];
      config["original_max_position_embeddings"] = original;
      config["rope_parameters"]["original_max_position_embeddings"] = original;
      return model::lm_config_from_hf(config, "longrope-partial");
    }
  ADD_FAILURE() << "no longrope-partial case";
  return {};
}

TEST(Rotary, LongropeTakesItsLongFactorsPastTheOriginalContext) {
  model::LmConfig c = longrope_config(8);
  model::Rotary r = model::make_rotary(c);
  const int64_t R = c.rotary_width();
  ASSERT_EQ(R, 12);  // head_dim 16 x 0.75
  auto expected_cos = [&](const torch::Tensor& inv_freq, const torch::Tensor& positions) {
    torch::Tensor freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq;
    return torch::cat({freqs, freqs}, -1).cos() * r.attention_factor;
  };
  for (const int64_t T : {8, 9}) {
    const torch::Tensor x = torch::zeros({1, T, 4});
    const auto [cos, sin] = model::rope_angles(r, {}, x);
    const torch::Tensor& freq = T > 8 ? r.long_inv_freq : r.inv_freq;
    EXPECT_TRUE(torch::allclose(cos, expected_cos(freq, torch::arange(T)), 1e-6, 1e-6)) << "T = " << T;
    EXPECT_EQ(cos.size(-1), R);
  }
  // Packed rows: the longest position over the batch decides, as transformers' max(position_ids) does.
  for (const int64_t longest : {8, 9}) {
    const torch::Tensor segments = torch::cat({torch::zeros({1, longest}, torch::kLong), torch::ones({1, 10 - longest}, torch::kLong)}, 1);
    const model::Packing packing = model::pack_rows(segments);
    const auto [cos, sin] = model::rope_angles(r, packing, torch::zeros({1, 10, 4}));
    const torch::Tensor& freq = longest > 8 ? r.long_inv_freq : r.inv_freq;
    EXPECT_TRUE(torch::allclose(cos, expected_cos(freq, packing.positions).unsqueeze(1), 1e-6, 1e-6)) << "longest " << longest;
  }
}

TEST(Rotary, PartialRotationTurnsTheFrontOfEachHeadAndPassesTheRest) {
  model::LmConfig c = longrope_config(64);
  model::Rotary r = model::make_rotary(c);
  const torch::Tensor x = torch::randn({2, 3, 5, 16}, torch::TensorOptions().requires_grad(true));
  const auto [cos, sin] = model::rope_angles(r, {}, torch::zeros({2, 5, 4}));
  const torch::Tensor y = model::apply_rope(x, cos, sin);
  ASSERT_EQ(y.sizes(), x.sizes());
  // transformers' Phi-3: cat(q_rot * cos + rotate_half(q_rot) * sin, q_pass)
  const torch::Tensor front = x.narrow(-1, 0, 12);
  const torch::Tensor rotate_half = torch::cat({-front.narrow(-1, 6, 6), front.narrow(-1, 0, 6)}, -1);
  const torch::Tensor want = torch::cat({front * cos + rotate_half * sin, x.narrow(-1, 12, 4)}, -1);
  EXPECT_TRUE(torch::allclose(y, want, 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(y.narrow(-1, 12, 4), x.narrow(-1, 12, 4)));
  const torch::Tensor g = torch::randn_like(y);
  const torch::Tensor grad = torch::autograd::grad({y}, {x}, {g})[0];
  const torch::Tensor want_grad = torch::autograd::grad({want}, {x}, {g})[0];
  EXPECT_TRUE(torch::allclose(grad, want_grad, 1e-6, 1e-6));
}

TEST(Rotary, SettingsItCannotBuildAreRefusedByName) {
  auto refused = [](const std::function<void(json&)>& edit, const char* name = "longrope-partial") {
    for (const json& c : rope_cases())
      if (c["name"] == name) {
        json config = c["config"];
        edit(config);
        return test::error_of([&] { model::lm_config_from_hf(config, "x/config.json"); });
      }
    return std::string("no case");
  };
  std::string why = refused([](json& j) { j["rope_parameters"]["short_factor"] = {1.0, 2.0}; });
  EXPECT_NE(why.find("x/config.json"), std::string::npos) << why;
  EXPECT_NE(why.find("rope_short_factor has 2 numbers; longrope needs one per rotated frequency, 6"), std::string::npos) << why;
  why = refused([](json& j) { j["rope_parameters"]["long_factor"] = "1.0"; });
  EXPECT_NE(why.find("\"rope_parameters.long_factor\""), std::string::npos) << why;
  EXPECT_NE(why.find("a list of numbers"), std::string::npos) << why;
  why = refused([](json& j) { j["rope_parameters"]["rope_type"] = "su"; });
  EXPECT_NE(why.find("lofi has \"default\", \"linear\", \"llama3\", \"yarn\", \"longrope\" and \"dynamic\""), std::string::npos) << why;
  // Llama's model in transformers turns whole heads: a partial rotation there is refused, not guessed.
  why = refused([](json& j) { j["rope_parameters"]["partial_rotary_factor"] = 0.5; }, "yarn");
  EXPECT_NE(why.find("\"rope_parameters.partial_rotary_factor\""), std::string::npos) << why;
  EXPECT_NE(why.find("\"llama\" rotates whole heads"), std::string::npos) << why;
  why = refused([](json& j) { j["rope_parameters"]["partial_rotary_factor"] = 0.7; });  // 16 x 0.7 = 11 features
  EXPECT_NE(why.find("= 11 rotated features"), std::string::npos) << why;
  // A run config: lists of numbers in TOML, checked as config.json's are.
  train::Config config;
  train::apply_toml_text(config,
                         "[model]\narch = \"phi3\"\nd_model = 64\nn_head = 4\nrope_scaling = \"longrope\"\n"
                         "rope_original_max_positions = 32\nrope_short_factor = [1, 1.5]\nrope_long_factor = [2.0, 4.0]\n"
                         "partial_rotary_factor = 0.25\n",
                         "run.toml");
  EXPECT_EQ(config.model.rope_short_factor, "1.0,1.5");
  why = test::error_of([&] { train::apply_toml_text(config, "[model]\nrope_long_factor = [2.0, \"x\"]\n", "run.toml"); });
  EXPECT_NE(why.find("run.toml: key 'model.rope_long_factor': item 1 of the list is floating-point"), std::string::npos) << why;
  model::Rotary r = model::make_rotary(config.model);
  EXPECT_EQ(r.inv_freq.numel(), 2);  // 16 x 0.25 / 2
  config.model.rope_long_factor = "2.0,4.0,8.0";  // one too many
  why = test::error_of([&] { model::make_rotary(config.model); });
  EXPECT_NE(why.find("rope_long_factor has 3 numbers; longrope needs one per rotated frequency, 2"), std::string::npos) << why;
}

}  // namespace
}  // namespace lofi
