// model/moe.h: a mixture of experts against a token-by-token reference written from the
// definition (each token's router softmax, its top experts, their outputs weighted), values and
// gradients; the names the checkpoints use; LoRA leaves routers and experts alone, as PEFT does
// on transformers 5's modules; the routers' load-balancing loss and its gradients against
// transformers'. Whole models against transformers: hf_test.cpp (qwen3-moe, mixtral).
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "lofi/family/lm_footprint.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/causal_lm.h"
#include "lofi/model/hf.h"
#include "lofi/model/lora.h"
#include "lofi/model/moe.h"
#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi {
namespace {

namespace fs = std::filesystem;

model::LmConfig moe_config(bool normalise) {
  model::LmConfig c;
  c.arch = "qwen3_moe";
  c.d_model = 8, c.d_ff = 12, c.moe_d_ff = 6, c.num_experts = 5, c.experts_per_token = 2;
  c.norm_topk_prob = normalise;
  c.activation = "silu";
  return c;
}

// down(silu(gate x) * up x) of expert E, from its weights.
torch::Tensor expert_of(model::SparseMoeImpl& moe, int64_t e, const torch::Tensor& x) {
  auto& expert = *moe.experts->ptr<model::ExpertMlpImpl>(e);
  return (torch::silu(x.matmul(expert.gate->weight.t())) * x.matmul(expert.up->weight.t())).matmul(expert.down->weight.t());
}

TEST(Moe, EachTokenTakesItsChosenExpertsWeightedByTheRouter) {
  for (const bool normalise : {true, false}) {
    SCOPED_TRACE(normalise ? "norm_topk_prob" : "raw probabilities");
    torch::manual_seed(3);
    model::SparseMoe moe(moe_config(normalise), model::MoeNames{});
    {
      torch::NoGradGuard no_grad;
      for (auto& p : moe->parameters()) p.normal_(0, 0.5);
    }
    const torch::Tensor x = torch::randn({2, 7, 8}, torch::TensorOptions().requires_grad(true));
    const torch::Tensor y = moe->forward(x);
    ASSERT_EQ(y.sizes(), x.sizes());
    // The reference, one token at a time.
    std::vector<torch::Tensor> rows;
    const torch::Tensor flat = x.reshape({14, 8});
    for (int64_t n = 0; n < 14; ++n) {
      const torch::Tensor token = flat[n].unsqueeze(0);                                  // (1, C)
      const torch::Tensor probs = torch::softmax(token.matmul(moe->gate->weight.t()), -1)[0];  // (E)
      auto [top, chosen] = probs.topk(2);
      const torch::Tensor weights = normalise ? top / top.sum() : top;
      torch::Tensor row = torch::zeros({1, 8});
      for (int64_t k = 0; k < 2; ++k) {
        row = row + weights[k] * expert_of(*moe, chosen[k].item<int64_t>(), token);
      }
      rows.push_back(row);
    }
    const torch::Tensor want = torch::cat(rows).reshape({2, 7, 8});
    EXPECT_TRUE(torch::allclose(y, want, 1e-5, 1e-6)) << (y - want).abs().max().item<double>();
    // Gradients: into the input, the router and an expert.
    const torch::Tensor g = torch::randn_like(y);
    auto& first = *moe->experts->ptr<model::ExpertMlpImpl>(0);
    const auto got = torch::autograd::grad({y}, {x, moe->gate->weight, first.down->weight}, {g}, /*retain_graph=*/true);
    const auto expected = torch::autograd::grad({want}, {x, moe->gate->weight, first.down->weight}, {g}, true, false, true);
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(expected[i].defined());
      EXPECT_TRUE(torch::allclose(got[i], expected[i], 1e-5, 1e-6)) << "gradient " << i << ": "
                                                                      << (got[i] - expected[i]).abs().max().item<double>();
    }
  }
}

// An expert no token reached still gets a gradient, of zeros: gradient sync all-reduces every
// parameter of a node's workers every step, and an absent gradient would stop the run.
TEST(Moe, AnExpertNoTokenReachedGetsAZeroGradient) {
  torch::manual_seed(5);
  model::SparseMoe moe(moe_config(true), model::MoeNames{});
  {
    torch::NoGradGuard no_grad;
    for (auto& p : moe->parameters()) p.normal_(0, 0.5);
    moe->gate->weight[4].fill_(0);
    moe->gate->weight[4][0] = -100;  // the router never picks expert 4 for inputs with x[0] > 0
  }
  const torch::Tensor x = torch::rand({2, 7, 8}) + 0.1;
  moe->forward(x).sum().backward();
  double reached = 0;
  for (int64_t e = 0; e < 5; ++e)
    for (const auto& p : moe->experts[e]->parameters()) {
      ASSERT_TRUE(p.grad().defined()) << "expert " << e;
      if (e == 4) EXPECT_EQ(p.grad().abs().sum().item<double>(), 0.0);
      else reached += p.grad().abs().sum().item<double>();
    }
  EXPECT_GT(reached, 0.0);
}

TEST(Moe, PartsAreNamedAsTheCheckpointsNameThem) {
  model::SparseMoe qwen(moe_config(true), model::MoeNames{});
  model::SparseMoe mixtral(moe_config(true), model::MoeNames{"block_sparse_moe", "w1", "w3", "w2"});
  auto names = [](const torch::nn::Module& m) {
    std::vector<std::string> out;
    for (const auto& p : m.named_parameters()) out.push_back(p.key());
    return out;
  };
  const auto q = names(*qwen), x = names(*mixtral);
  ASSERT_EQ(q.size(), 1u + 5 * 3);
  EXPECT_EQ(q[0], "gate.weight");
  EXPECT_EQ(q[1], "experts.0.gate_proj.weight");
  EXPECT_EQ(q[3], "experts.0.down_proj.weight");
  EXPECT_EQ(x[1], "experts.0.w1.weight");
  EXPECT_EQ(x[2], "experts.0.w3.weight");
  EXPECT_EQ(x[3], "experts.0.w2.weight");
  EXPECT_EQ(qwen->gate->weight.sizes(), (std::vector<int64_t>{5, 8}));
  EXPECT_EQ(qwen->experts->ptr<model::ExpertMlpImpl>(4)->down->weight.sizes(), (std::vector<int64_t>{8, 6}));
}

model::CausalLm fixture_model(const char* name) {
  const std::string dir = (fs::path(LOFI_FIXTURES) / "hf" / "transformers" / name).string();
  model::CausalLm lm = model::make_causal_lm(model::read_hf_config(dir));
  model::load_hf_weights(*lm, dir);
  return lm;
}

TEST(Moe, LoraAdaptsTheAttentionAndNeitherRoutersNorExperts) {
  model::CausalLm lm = fixture_model("qwen3-moe");
  double params = 0;
  for (const auto& p : lm->parameters()) params += static_cast<double>(p.numel());
  EXPECT_GE(lm->config.parameter_bound(), params);  // what the memory checks count on
  io::LoraSpec spec;
  spec.r = 2, spec.alpha = 4, spec.target_modules = {"all-linear"};
  const std::vector<std::string> adapted = model::apply_lora(*lm, spec, 1);
  ASSERT_EQ(adapted.size(), 2u * 4);  // q, k, v and o of 2 blocks
  for (const auto& name : adapted) EXPECT_NE(name.find(".self_attn."), std::string::npos) << name;
  // Qwen2-MoE's shared expert and its gate are linear layers in transformers 5 too: PEFT adapts them.
  model::CausalLm shared = fixture_model("qwen2-moe");
  params = 0;
  for (const auto& p : shared->parameters()) params += static_cast<double>(p.numel());
  EXPECT_GE(shared->config.parameter_bound(), params);
  const std::vector<std::string> with_shared = model::apply_lora(*shared, spec, 1);
  EXPECT_EQ(with_shared.size(), 2u * 8);  // q, k, v, o, the shared expert's three and its gate, of 2 blocks
  for (const auto& name : with_shared)
    EXPECT_TRUE(name.find(".self_attn.") != std::string::npos || name.find(".mlp.shared_expert") != std::string::npos) << name;
  model::CausalLm again = fixture_model("mixtral");
  spec.target_modules = {"q_proj", "w1"};
  const std::string why = test::error_of([&] { model::apply_lora(*again, spec, 1); });
  EXPECT_NE(why.find("lora.target \"w1\" matches no linear layer of this model; its linear layers are q_proj, k_proj, v_proj, o_proj"),
            std::string::npos)
      << why;
}

// config.json's output_router_logits and router_aux_loss_coef, read and written under those names
// (so transformers trains an export as lofi did); on a model without experts they are refused.
TEST(Moe, RouterLossSettingsKeepTransformersNames) {
  const fs::path dir = fs::path(LOFI_FIXTURES) / "hf" / "transformers";
  for (const char* name : {"qwen3-moe", "mixtral", "qwen2-moe", "gpt-oss", "olmoe"}) {
    SCOPED_TRACE(name);
    nlohmann::json j = nlohmann::json::parse(io::read_text_file((dir / name / "config.json").string()));
    EXPECT_FALSE(model::lm_config_from_hf(j, "c").output_router_logits);
    j["output_router_logits"] = true;
    j["router_aux_loss_coef"] = 0.02;
    const model::LmConfig c = model::lm_config_from_hf(j, "c");
    EXPECT_TRUE(c.output_router_logits);
    EXPECT_EQ(c.router_aux_loss_coef, 0.02);
    const nlohmann::json written = nlohmann::json::parse(model::hf_config_json(c, "float32").dump());
    EXPECT_EQ(written["output_router_logits"], true);
    EXPECT_EQ(written["router_aux_loss_coef"], 0.02);
    j["router_aux_loss_coef"] = -1.0;
    EXPECT_NE(test::error_of([&] { model::lm_config_from_hf(j, "x/config.json"); }).find("\"router_aux_loss_coef\": -1.0 is not supported"),
              std::string::npos);
  }
  const std::string e = test::error_of([] { train::load_config("", {"model.arch=llama", "model.output_router_logits=true"}); });
  EXPECT_NE(e.find("output_router_logits"), std::string::npos) << e;
}

// allenai/OLMoE-1B-7B-0924's config.json (transformers 4.43) reads as transformers reads it, and
// the plan counts the model card's 6.9B parameters; clip_qkv is refused by name.
TEST(Moe, PublishedOlmoeConfigReadsAsTransformersReadsIt) {
  nlohmann::json hub = nlohmann::json::parse(R"({"architectures": ["OlmoeForCausalLM"], "attention_bias": false,
    "attention_dropout": 0.0, "clip_qkv": null, "eos_token_id": 50279, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 1024, "max_position_embeddings": 4096, "model_type": "olmoe",
    "norm_topk_prob": false, "num_attention_heads": 16, "num_experts": 64, "num_experts_per_tok": 8, "num_hidden_layers": 16,
    "num_key_value_heads": 16, "output_router_logits": false, "pad_token_id": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
    "rope_theta": 10000.0, "router_aux_loss_coef": 0.01, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 50304})");
  const model::LmConfig c = model::lm_config_from_hf(hub, "OLMoE-1B-7B-0924/config.json");
  EXPECT_EQ(c.arch, "olmoe");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.num_experts, 64);
  EXPECT_EQ(c.experts_per_token, 8);
  EXPECT_EQ(c.expert_width(), 1024);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.router_aux_loss_coef, 0.01);
  train::Config config;
  static_cast<model::LmConfig&>(config.model) = c;
  config.data.seq_len = 128;
  const train::ModelFootprint f = family::lm_footprint(config, 1);
  const double total = static_cast<double>(f.trainable + f.frozen);
  std::cout << "OLMoE-1B-7B: " << total / 1e9 << "B parameters\n";
  EXPECT_NEAR(total / 6.9e9, 1.0, 0.01);
  hub["clip_qkv"] = 8.0;
  const std::string e = test::error_of([&] { model::lm_config_from_hf(hub, "x/config.json"); });
  EXPECT_NE(e.find("x/config.json: \"clip_qkv\": 8.0 is not supported"), std::string::npos) << e;
}

// The routers' load-balancing loss (output_router_logits) against transformers' on its own tiny
// models (router-loss/, make_router_loss_fixtures.py): the loss, and the gradients of the routers,
// of an attention weight and of the embedding; the same through checkpointed blocks, whose
// routers get that gradient through the recomputation; and the loss does move the routers.
TEST(Moe, LoadBalancingLossAndGradientsEqualTransformers) {
  for (const char* name : {"qwen3-moe", "mixtral", "qwen2-moe", "gpt-oss", "olmoe"}) {
    SCOPED_TRACE(name);
    io::SafetensorsFile ref((fs::path(LOFI_FIXTURES) / "hf" / "router-loss" / (std::string(name) + ".safetensors")).string());
    model::CausalLm lm = fixture_model(name);
    const std::string router = lm->config.arch == "mixtral" ? "block_sparse_moe.gate" : lm->config.arch == "gpt_oss" ? "mlp.router" : "mlp.gate";
    lm->config.output_router_logits = true;
    lm->config.router_aux_loss_coef = ref.load("coef").item<double>();
    lm->train();
    auto grads = [&](int64_t checkpoint_every) {
      lm->zero_grad();
      lm->checkpoint_every = checkpoint_every;
      const torch::Tensor loss = lm->loss(ref.load("inputs"), ref.load("targets"));
      loss.backward();
      std::map<std::string, torch::Tensor> g{{"loss", loss.detach()}};
      const auto params = lm->named_parameters();
      for (int64_t l = 0; l < lm->config.n_layer; ++l)
        g["router." + std::to_string(l)] = params["model.layers." + std::to_string(l) + "." + router + ".weight"].grad().clone();
      g["q_proj.0"] = params["model.layers.0.self_attn.q_proj.weight"].grad().clone();
      g["embed"] = params["model.embed_tokens.weight"].grad().clone();
      if (lm->config.arch == "gpt_oss")  // its sinks, the router's bias and the 3-D experts (clamped, interleaved)
        for (const auto& [key, param] : std::map<std::string, std::string>{{"sinks.0", "self_attn.sinks"},
                                                                           {"router_bias.0", "mlp.router.bias"},
                                                                           {"gate_up_proj.0", "mlp.experts.gate_up_proj"},
                                                                           {"down_proj.0", "mlp.experts.down_proj"}})
          g[key] = params["model.layers.0." + param].grad().clone();
      return g;
    };
    const auto plain = grads(0), checkpointed = grads(1);
    std::cout << name << ": loss " << plain.at("loss").item<double>() << ", transformers' " << ref.load("loss").item<double>() << "\n";
    for (const auto& [key, value] : plain) {
      const torch::Tensor want = ref.load(key);
      EXPECT_LE((value - want).abs().max().item<double>(), 1e-5 * std::max(1.0, want.abs().max().item<double>())) << key;
      EXPECT_LE((checkpointed.at(key) - value).abs().max().item<double>(), 1e-6) << key << " checkpointed";
    }
    // Without the loss the routers' gradients are other: the test sees it.
    lm->config.output_router_logits = false;
    const auto lm_only = grads(0);
    EXPECT_NEAR(lm_only.at("loss").item<double>(), ref.load("lm").item<double>(), 1e-5);
    EXPECT_GT((lm_only.at("router.0") - ref.load("router.0")).abs().max().item<double>(), 1e-3);
    // Padding left out (transformers' attention mask; lofi's chat batches pass their non-padding
    // tokens): the loss with the fixture's mask equals transformers' aux_kept, through checkpointed
    // blocks too, and differs from the loss over every token.
    lm->config.output_router_logits = true;
    const torch::Tensor kept = ref.load("kept").to(torch::kBool);
    const double want_kept = ref.load("lm").item<double>() + ref.load("coef").item<double>() * ref.load("aux_kept").item<double>();
    std::vector<torch::Tensor> router_grads;  // layer 0's router, plain and checkpointed: the recomputation leaves padding out too
    for (int64_t every : {0, 1}) {
      lm->zero_grad();
      lm->checkpoint_every = every;
      const torch::Tensor loss = lm->loss(ref.load("inputs"), ref.load("targets"), {}, kept);
      EXPECT_NEAR(loss.item<double>(), want_kept, 1e-5) << every;
      loss.backward();
      router_grads.push_back(lm->named_parameters()["model.layers.0." + router + ".weight"].grad().clone());
    }
    EXPECT_LE((router_grads[1] - router_grads[0]).abs().max().item<double>(), 1e-6);
    EXPECT_GT((router_grads[0] - ref.load("router.0")).abs().max().item<double>(), 1e-6);  // padding did change them
    lm->checkpoint_every = 0;
    EXPECT_GT(std::abs(ref.load("aux_kept").item<double>() - ref.load("aux").item<double>()), 1e-3);
    // Evaluation (no gradients) scores the language model alone.
    torch::NoGradGuard no_grad;
    EXPECT_NEAR(lm->loss(ref.load("inputs"), ref.load("targets")).item<double>(), ref.load("lm").item<double>(), 1e-5);
  }
}

}  // namespace
}  // namespace lofi
