#include "lofi/model/causal_lm.h"

#include <gtest/gtest.h>

#include "lofi/io/safetensors.h"
#include "lofi/model/opt.h"
#include "lofi/model/weights.h"
#include "test_util.h"

namespace lofi::model {
namespace {

LmConfig tiny(const std::string& arch = "opt") {
  LmConfig c;
  c.arch = arch;
  c.n_layer = 2;
  c.n_head = 2;
  c.d_model = 16;
  c.d_ff = 32;
  c.vocab_size = 50;
  c.max_seq_len = 12;
  return c;
}

TEST(CausalLm, ParameterNamesAreHuggingFaceOpt) {
  torch::manual_seed(0);
  CausalLm gpt = make_causal_lm(tiny());
  auto params = gpt->named_parameters();
  for (const char* name : {"model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
                           "model.decoder.final_layer_norm.weight", "model.decoder.layers.1.self_attn.q_proj.weight",
                           "model.decoder.layers.0.self_attn.out_proj.bias", "model.decoder.layers.0.fc1.weight",
                           "model.decoder.layers.1.self_attn_layer_norm.bias", "model.decoder.layers.1.final_layer_norm.weight"})
    EXPECT_NE(params.find(name), nullptr) << name;
  EXPECT_EQ(params["model.decoder.embed_positions.weight"].size(0), 12 + kOptPositionOffset);
  EXPECT_EQ(params["model.decoder.layers.0.fc1.weight"].sizes(), torch::IntArrayRef({32, 16}));
  EXPECT_EQ(params.find("lm_head.weight"), nullptr);  // tied to embed_tokens
}

TEST(CausalLm, LogitShapes) {
  torch::manual_seed(0);
  CausalLm gpt = make_causal_lm(tiny());
  init_causal_lm_weights(*gpt);
  torch::Tensor tokens = torch::randint(0, 50, {3, 7});
  EXPECT_EQ(gpt->forward(tokens).sizes(), torch::IntArrayRef({3, 7, 50}));
  EXPECT_THROW(gpt->forward(torch::randint(0, 50, {1, 13})), std::exception);  // longer than max_seq_len
}

TEST(CausalLm, TokensNeverSeeTheFuture) {
  torch::manual_seed(0);
  CausalLm gpt = make_causal_lm(tiny());
  init_causal_lm_weights(*gpt);
  gpt->eval();
  torch::Tensor a = torch::randint(0, 50, {1, 10});
  torch::Tensor b = a.clone();
  b.index_put_({0, torch::indexing::Slice(6)}, torch::randint(0, 50, {4}));  // change positions 6..9
  torch::Tensor la = gpt->forward(a), lb = gpt->forward(b);
  EXPECT_TRUE(torch::allclose(la.narrow(1, 0, 6), lb.narrow(1, 0, 6), 0, 0));  // bit-identical past
  EXPECT_FALSE(torch::allclose(la.narrow(1, 6, 4), lb.narrow(1, 6, 4)));      // the changed future differs
}

TEST(CausalLm, LossFallsWhenOverfittingOneBatch) {
  torch::manual_seed(0);
  CausalLm gpt = make_causal_lm(tiny());
  init_causal_lm_weights(*gpt);
  torch::Tensor window = torch::randint(0, 50, {4, 11});
  torch::Tensor x = window.narrow(1, 0, 10), y = window.narrow(1, 1, 10);
  torch::optim::AdamW opt(gpt->parameters(), torch::optim::AdamWOptions(3e-3));
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    opt.zero_grad();
    torch::Tensor loss = gpt->loss(x, y);
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_NEAR(first, std::log(50.0), 0.3);  // near-uniform at init
  EXPECT_LT(last, 0.3 * first);
}

TEST(Weights, RoundTripThroughSafetensors) {
  std::string path = test::scratch_dir() + "/w.safetensors";
  torch::manual_seed(1);
  CausalLm a = make_causal_lm(tiny()), b = make_causal_lm(tiny());
  init_causal_lm_weights(*a);
  io::save_safetensors(path, module_weights(*a));
  io::SafetensorsFile file(path);
  load_module_weights(*b, file);
  auto pb = b->named_parameters();
  for (const auto& item : a->named_parameters()) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
}

TEST(Weights, WrongShapeOrMissingTensorIsNamed) {
  std::string dir = test::scratch_dir();
  LmConfig small = tiny(), wide = tiny();
  wide.d_model = 32;
  CausalLm a = make_causal_lm(small), b = make_causal_lm(wide);
  io::save_safetensors(dir + "/a.safetensors", module_weights(*a));
  try {
    load_module_weights(*b, io::SafetensorsFile(dir + "/a.safetensors"));
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("model.decoder.embed_tokens.weight"), std::string::npos) << e.what();
  }
  auto weights = module_weights(*a);
  weights.pop_back();
  io::save_safetensors(dir + "/b.safetensors", weights);
  EXPECT_THROW(load_module_weights(*a, io::SafetensorsFile(dir + "/b.safetensors")), std::exception);
}

}  // namespace
}  // namespace lofi::model
