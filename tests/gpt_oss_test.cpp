// gpt-oss (archs/gpt_oss.cpp, model/gpt_oss_moe.h): what the whole-model golden tests cannot tell
// apart. hf_test.cpp holds lofi's logits and export to transformers' on the fixture
// (make_llama_fixtures.py's gpt-oss), lora_test.cpp a PEFT adapter on it, moe_test.cpp the
// load-balancing loss and the gradients of the sinks, router and experts. Here: each of gpt-oss's
// own parts moves the logits (so those tests see each), the published config.json reads as
// transformers reads it with the published parameter count, and the published MXFP4 experts read
// as transformers dequantizes them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "lofi/family/export.h"
#include "lofi/family/lm_footprint.h"
#include "lofi/family/lm_model.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/io/safetensors_set.h"
#include "lofi/merge/engine.h"
#include "lofi/model/blocks.h"
#include "lofi/model/gpt_oss_moe.h"
#include "lofi/model/hf.h"
#include "lofi/model/llama.h"
#include "lofi/model/mxfp4.h"
#include "lofi/train/config.h"
#include "cpu_bytes.h"
#include "test_util.h"

namespace lofi {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kFixture = fs::path(LOFI_FIXTURES) / "hf" / "transformers" / "gpt-oss";
const fs::path kMxfp4Fixture = fs::path(LOFI_FIXTURES) / "hf" / "transformers" / "gpt-oss-mxfp4";

json read_json(const fs::path& path) { return json::parse(io::read_text_file(path.string())); }

model::CausalLm fixture() {
  train::ModelConfig c;
  c.init = kFixture.string();
  model::CausalLm lm = family::make_lm(c, 0);
  lm->eval();
  return lm;
}

// The fixture's sinks, clamp and window each change its logits: with the sinks at -infinity (no
// sink), the clamp lifted, or every layer over the whole sequence, lofi's logits leave
// transformers' by more than 1e-3, where with all three they agree to 1e-4.
TEST(GptOss, SinksClampAndWindowEachMatter) {
  model::CausalLm lm = fixture();
  EXPECT_EQ(lm->config.swiglu_limit, 0.5);
  EXPECT_EQ(lm->config.sliding_window, 6);
  EXPECT_EQ(lm->config.layer_window(0), 6);
  EXPECT_EQ(lm->config.layer_window(1), 0);
  io::SafetensorsFile ref((kFixture / "logits.safetensors").string());
  torch::NoGradGuard no_grad;
  const torch::Tensor tokens = ref.load("tokens"), want = ref.load("logits");
  const double agree = (lm->forward(tokens) - want).abs().max().item<double>();
  std::cout << "gpt-oss: max |logit diff| from transformers = " << agree << "\n";
  EXPECT_LE(agree, 1e-4);
  auto layer = [&](int64_t i) { return lm->decoder_blocks()->ptr<model::LlamaDecoderLayerImpl>(i); };
  auto moved = [&] { return (lm->forward(tokens) - want).abs().max().item<double>(); };
  std::vector<torch::Tensor> sinks;
  for (int64_t i = 0; i < 2; ++i) sinks.push_back(layer(i)->self_attn->sinks.clone()), layer(i)->self_attn->sinks.fill_(-1e30);
  EXPECT_GT(moved(), 1e-3) << "without sinks";
  for (int64_t i = 0; i < 2; ++i) layer(i)->self_attn->sinks.copy_(sinks[i]);
  for (int64_t i = 0; i < 2; ++i) layer(i)->experts.get<model::GptOssMoeImpl>().experts->limit = 1e9;
  EXPECT_GT(moved(), 1e-3) << "unclamped";
  for (int64_t i = 0; i < 2; ++i) layer(i)->experts.get<model::GptOssMoeImpl>().experts->limit = 0.5;
  layer(0)->self_attn->window = 0;
  EXPECT_GT(moved(), 1e-3) << "no window";
  layer(0)->self_attn->window = 6;
  EXPECT_LE(moved(), 1e-4);
}

// openai/gpt-oss-20b's config.json (transformers 4.55), its experts in MXFP4 (read dequantized,
// below): it reads as transformers reads it, and the plan counts the model card's 20.91B
// parameters. Other quantizations, and MXFP4 where transformers has none, are refused by name.
TEST(GptOss, PublishedConfigReadsAsTransformersReadsIt) {
  json hub = json::parse(R"({"architectures": ["GptOssForCausalLM"], "attention_bias": true, "attention_dropout": 0.0,
    "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880,
    "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 2880, "max_position_embeddings": 131072,
    "model_type": "gpt_oss", "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 24,
    "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": false, "pad_token_id": 199999,
    "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
      "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
    "rms_norm_eps": 1e-05, "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
      "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": false},
    "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
    "tie_word_embeddings": false, "transformers_version": "4.55.0.dev0", "use_cache": true, "vocab_size": 201088})");
  json kinds = json::array();
  for (int i = 0; i < 24; ++i) kinds.push_back(i % 2 == 0 ? "sliding_attention" : "full_attention");
  hub["layer_types"] = kinds;
  json gptq = hub;
  gptq["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
  const std::string e = test::error_of([&] { model::lm_config_from_hf(gptq, "gpt-oss-20b/config.json"); });
  EXPECT_NE(e.find("gpt-oss-20b/config.json: quantization_config (quant_method \"gptq\"): lofi reads unquantized"), std::string::npos) << e;
  EXPECT_NE(e.find("model.dequantize()"), std::string::npos) << e;
  json mxfp4_llama = json::parse(R"({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 64, "quantization_config": {"quant_method": "mxfp4"}})");
  const std::string llama = test::error_of([&] { model::lm_config_from_hf(mxfp4_llama, "llama/config.json"); });
  EXPECT_NE(llama.find("llama/config.json: quantization_config (quant_method \"mxfp4\") on a \"llama\" model"), std::string::npos)
      << llama;
  const model::LmConfig c = model::lm_config_from_hf(hub, "gpt-oss-20b/config.json");
  json dequantized = hub;
  dequantized.erase("quantization_config");  // as save_pretrained writes it after Mxfp4Config(dequantize=True)
  EXPECT_EQ(model::hf_config_json(model::lm_config_from_hf(dequantized, "x"), "bfloat16").dump(),
            model::hf_config_json(c, "bfloat16").dump());
  EXPECT_EQ(c.arch, "gpt_oss");
  EXPECT_EQ(c.n_layer, 24);
  EXPECT_EQ(c.d_model, 2880);
  EXPECT_EQ(c.d_ff, 2880);
  EXPECT_EQ(c.head_width(), 64);
  EXPECT_EQ(c.kv_heads(), 8);
  EXPECT_EQ(c.num_experts, 32);
  EXPECT_EQ(c.experts_per_token, 4);
  EXPECT_TRUE(c.attention_sinks);
  EXPECT_TRUE(c.attention_bias && c.attention_out_bias);
  EXPECT_EQ(c.swiglu_limit, 7.0);
  EXPECT_EQ(c.swiglu_alpha, 1.702);
  EXPECT_EQ(c.sliding_window, 128);
  EXPECT_EQ(c.layer_window(0), 128);
  EXPECT_EQ(c.layer_window(1), 0);
  EXPECT_EQ(c.rope_scaling, "yarn");
  EXPECT_EQ(c.rope_factor, 32.0);
  EXPECT_FALSE(c.rope_truncate);
  EXPECT_EQ(c.rope_original_max_positions, 4096);
  EXPECT_EQ(c.router_aux_loss_coef, 0.9);
  EXPECT_FALSE(c.tie_word_embeddings);
  // Written back, transformers' keys come out as they went in, and the weights written are not
  // quantized: no quantization_config.
  const json written = json::parse(model::hf_config_json(c, "bfloat16", hub).dump());
  EXPECT_FALSE(written.contains("quantization_config"));
  for (const char* key : {"num_local_experts", "num_experts_per_tok", "swiglu_limit", "sliding_window", "layer_types",
                          "router_aux_loss_coef", "attention_bias", "head_dim"})
    EXPECT_EQ(written[key], hub[key]) << key;
  EXPECT_EQ(model::lm_config_from_hf(written, "written").swiglu_limit, 7.0);
  // The model card: 20.91B parameters in all.
  train::Config config;
  static_cast<model::LmConfig&>(config.model) = c;
  config.data.seq_len = 128;
  const train::ModelFootprint f = family::lm_footprint(config, 1);
  const double total = static_cast<double>(f.trainable + f.frozen);
  std::cout << "gpt-oss-20b: " << total / 1e9 << "B parameters\n";
  EXPECT_NEAR(total / 20.91e9, 1.0, 0.002);
  // All layers full: no window anywhere.
  json full = hub;
  for (auto& kind : full["layer_types"]) kind = "full_attention";
  const model::LmConfig all_full = model::lm_config_from_hf(full, "full/config.json");
  EXPECT_EQ(all_full.layer_window(0), 0);
  EXPECT_EQ(all_full.layer_window(1), 0);
  // Layer kinds that follow no every-Nth pattern are refused by name.
  hub["layer_types"][2] = "full_attention";
  const std::string pattern = test::error_of([&] { model::lm_config_from_hf(hub, "x/config.json"); });
  EXPECT_NE(pattern.find("\"layer_types\""), std::string::npos) << pattern;
}

// A model built from scratch starts as transformers starts one: the experts' biases and the sinks at
// zero, the experts' weights drawn.
TEST(GptOss, FreshWeightsStartAsTransformersStartThem) {
  model::CausalLm lm = fixture();
  model::init_causal_lm_weights(*lm, 7);
  const auto params = lm->named_parameters();
  for (const char* zero : {"model.layers.0.mlp.experts.gate_up_proj_bias", "model.layers.0.mlp.experts.down_proj_bias",
                           "model.layers.0.self_attn.sinks", "model.layers.0.mlp.router.bias"})
    EXPECT_EQ(params[zero].abs().max().item<double>(), 0.0) << zero;
  EXPECT_NEAR(params["model.layers.0.mlp.experts.gate_up_proj"].std().item<double>(), 0.02, 0.005);
}

// Sinks through the fused kernel (one more key, model/blocks.cpp) equal the eager scores with the
// sink column (transformers' way): outputs and the gradients of q, k, v and the sinks within 1e-5
// in fp32, over grouped heads, a window shorter than the sequence, packed rows, and dropout off. And
// the fused way keeps less for its backward: not the (B, H, T, T) probabilities.
TEST(GptOss, SinksThroughTheFusedKernelEqualTheEagerScores) {
  torch::manual_seed(3);
  const int64_t B = 2, H = 4, Hkv = 2, T = 24, D = 8;
  const double scale = 1 / std::sqrt(static_cast<double>(D));
  const torch::Tensor segments = torch::cat({torch::zeros({1, T}, torch::kLong),
                                             torch::cat({torch::zeros({1, 10}, torch::kLong), torch::ones({1, T - 10}, torch::kLong)}, 1)});
  const torch::Tensor packed = model::pack_rows(segments).mask;  // (B, 1, T, T)
  for (const auto& [window, mask] : {std::pair<int64_t, torch::Tensor>{0, {}}, {6, {}}, {0, packed}, {6, packed}}) {
    SCOPED_TRACE("window " + std::to_string(window) + (mask.defined() ? ", packed" : ""));
    auto leaf = [](const torch::Tensor& t) { return t.detach().clone().requires_grad_(true); };
    const torch::Tensor q0 = torch::randn({B, H, T, D}), k0 = torch::randn({B, Hkv, T, D}), v0 = torch::randn({B, Hkv, T, D});
    const torch::Tensor s0 = torch::randn({H}) * 2, up = torch::randn({B, H, T, D});
    std::vector<torch::Tensor> outs, grads;
    for (bool fused : {true, false}) {
      const torch::Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0), sinks = leaf(s0);
      torch::Tensor y;
      if (fused) {
        y = model::causal_attention_heads(q, k, v, scale, window, 0.0, true, mask, 0.0, sinks);
      } else {
        const torch::Tensor i = torch::arange(T).unsqueeze(1), j = torch::arange(T).unsqueeze(0);
        torch::Tensor allowed = (j <= i).logical_and(window > 0 ? j > i - window : torch::ones({T, T}, torch::kBool));
        if (mask.defined()) allowed = allowed.logical_and(mask);
        y = model::eager_attention(q, k, v, allowed, scale, 0.0, sinks, 0.0);
      }
      (y * up).sum().backward();
      outs.push_back(y.detach());
      for (const auto& t : {q, k, v, sinks}) grads.push_back(t.grad());
    }
    EXPECT_LE((outs[0] - outs[1]).abs().max().item<double>(), 1e-5);
    for (size_t g = 0; g < 4; ++g) EXPECT_LE((grads[g] - grads[g + 4]).abs().max().item<double>(), 1e-5) << "gradient " << g;
    EXPECT_GT(grads[3].abs().max().item<double>(), 1e-3);  // the sinks do get a gradient
  }
  // Kept for backward at T = 256: the eager way holds (B, H, T, T) fp32 probabilities (2 MB here).
  const int64_t L = 256;
  const torch::Tensor q = torch::randn({B, H, L, D}, torch::requires_grad()), k = torch::randn({B, Hkv, L, D}, torch::requires_grad());
  const torch::Tensor v = torch::randn({B, Hkv, L, D}, torch::requires_grad()), sinks = torch::randn({H}, torch::requires_grad());
  int64_t kept[2];
  for (bool fused : {true, false}) {
    test::CpuBytes bytes;
    const torch::Tensor y = fused ? model::causal_attention_heads(q, k, v, scale, 0, 0.0, true, {}, 0.0, sinks)
                                  : model::eager_attention(q, k, v, torch::ones({L, L}, torch::kBool).tril(), scale, 0.0, sinks, 0.0);
    kept[fused ? 0 : 1] = bytes.live();
  }
  std::cout << "sink attention keeps " << kept[0] << " bytes fused, " << kept[1] << " eager\n";
  EXPECT_LT(kept[0] * 4, kept[1]);
}

// gpt-oss as published, its experts' weights in MXFP4 (make_llama_fixtures.py's gpt-oss-mxfp4:
// random 4-bit blocks and scales, two blocks a row). lofi reads them as transformers dequantizes them
// (Mxfp4Config(dequantize=True)): the same numbers exactly, so the same logits; built in pieces (a
// fully sharded start's deferred fills) too. `lofi export` of the directory writes them dequantized:
// no quantization_config, and transformers reads that back to the same logits.
TEST(GptOss, PublishedMxfp4ExpertsReadAsTransformersDequantizesThem) {
  io::SafetensorsFile ref((kMxfp4Fixture / "logits.safetensors").string());
  const torch::Tensor gate_up = ref.load("gate_up_proj.0"), down = ref.load("down_proj.0");
  train::ModelConfig c;
  c.init = kMxfp4Fixture.string();
  model::CausalLm lm = family::make_lm(c, 0);
  lm->eval();
  auto params = lm->named_parameters();
  EXPECT_TRUE(torch::equal(params["model.layers.0.mlp.experts.gate_up_proj"], gate_up));
  EXPECT_TRUE(torch::equal(params["model.layers.0.mlp.experts.down_proj"], down));
  torch::NoGradGuard no_grad;
  const double error = (lm->forward(ref.load("tokens")) - ref.load("logits")).abs().max().item<double>();
  std::cout << "gpt-oss MXFP4: max |logit diff| from transformers = " << error << "\n";
  EXPECT_LE(error, 1e-4);
  model::DeferredWeights deferred;
  model::CausalLm pieces = family::make_lm(c, 0, &deferred);
  EXPECT_TRUE(deferred.deferred("model.layers.0.mlp.experts.gate_up_proj"));
  for (const auto& item : pieces->named_parameters())
    if (deferred.deferred(item.key())) deferred.fill(item.key(), item.value());
  deferred.done();
  EXPECT_TRUE(torch::equal(pieces->named_parameters()["model.layers.0.mlp.experts.gate_up_proj"], gate_up));
  EXPECT_TRUE(torch::equal(pieces->named_parameters()["model.layers.1.mlp.experts.down_proj"],
                           params["model.layers.1.mlp.experts.down_proj"]));

  for (const char* dtype : {"F32", "BF16"}) {  // every MXFP4 number is a bf16 number
    const std::string out = test::scratch_dir() + "/dequantized-" + dtype;
    family::ExportOptions options;
    options.dtype = dtype;
    family::export_checkpoint(kMxfp4Fixture.string(), out, options);
    EXPECT_FALSE(read_json(fs::path(out) / "config.json").contains("quantization_config")) << dtype;
    EXPECT_EQ(read_json(fs::path(out) / "config.json")["swiglu_limit"], read_json(kMxfp4Fixture / "config.json")["swiglu_limit"]);
    const io::SafetensorsSet exported(out);
    EXPECT_EQ(exported.find("model.layers.0.mlp.experts.gate_up_proj_blocks"), nullptr) << dtype;
    const auto* written = exported.find("model.layers.0.mlp.experts.gate_up_proj");
    ASSERT_NE(written, nullptr) << dtype;
    EXPECT_TRUE(torch::equal(written->file->load(*written->entry).to(torch::kFloat), gate_up)) << dtype;
    if (std::string(dtype) == "F32") {
      test::CommandResult hf = test::run_python("hf/check_hf_export.py", out + " " + (kMxfp4Fixture / "logits.safetensors").string());
      std::cout << hf.output;
      EXPECT_EQ(hf.status, 0) << hf.output;
    }
  }
}

// Every scale byte, 0 to 255 (2^-127, a subnormal, to 2^128, past fp32's range), under random
// blocks: lofi decodes what transformers decodes, in fp32 and in bf16, overflow and all.
TEST(GptOss, Mxfp4DecodesEveryScaleAsTransformersDoes) {
  io::SafetensorsFile ref((kMxfp4Fixture / "logits.safetensors").string());
  const torch::Tensor blocks = ref.load("sweep_blocks"), scales = ref.load("sweep_scales");
  ASSERT_EQ(scales.min().item<int64_t>(), 0);
  ASSERT_EQ(scales.max().item<int64_t>(), 255);
  for (const auto& [dtype, key] : {std::pair<torch::Dtype, const char*>{torch::kFloat, "sweep_values"},
                                   {torch::kBFloat16, "sweep_values_bf16"}}) {
    const torch::Tensor want = ref.load(key), got = model::mxfp4_dequantize(blocks, scales, dtype, "sweep", "w");
    ASSERT_EQ(got.sizes(), want.sizes()) << key;
    ASSERT_EQ(got.scalar_type(), want.scalar_type()) << key;
    // Equal numbers, infinities and NaNs where transformers has them.
    EXPECT_TRUE(torch::isclose(got, want, /*rtol=*/0, /*atol=*/0, /*equal_nan=*/true).all().item<bool>()) << key;
    EXPECT_TRUE(torch::equal(torch::signbit(got), torch::signbit(want))) << key;  // -0 stays -0
    EXPECT_TRUE(torch::isfinite(want).any().item<bool>() && !torch::isfinite(want).all().item<bool>()) << key;
  }
}

// A checkpoint whose MXFP4 pair is broken is refused before anything is loaded, naming the tensor:
// half a pair, blocks and scales that do not fit each other, blocks or scales that are not bytes.
// Merges refuse an MXFP4 model (as --base or an input), naming the export that dequantizes it.
TEST(GptOss, BrokenMxfp4WeightsAreRefusedByName) {
  const io::NamedTensors stored = io::SafetensorsFile((kMxfp4Fixture / "model.safetensors").string()).load_all();
  auto copy_with = [&](const std::string& name, const std::function<void(io::NamedTensors&)>& edit) {
    const std::string dir = test::scratch_dir() + "/" + name;
    fs::create_directories(dir);
    fs::copy_file(kMxfp4Fixture / "config.json", fs::path(dir) / "config.json");
    io::NamedTensors tensors = stored;
    edit(tensors);
    io::save_safetensors(dir + "/model.safetensors", tensors);
    return dir;
  };
  auto load_error = [](const std::string& dir) {
    train::ModelConfig c;
    c.init = dir;
    return test::error_of([&] { family::make_lm(c, 0); });
  };
  const std::string scales = "model.layers.1.mlp.experts.down_proj_scales";
  const std::string half = load_error(copy_with("half", [&](io::NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& e) { return e.first == scales; }), t.end());
  }));
  EXPECT_NE(half.find("is half of an MXFP4 weight, but '" + scales + "' is absent"), std::string::npos) << half;
  const std::string shapes = load_error(copy_with("shapes", [&](io::NamedTensors& t) {
    for (auto& [name, tensor] : t)
      if (name == scales) tensor = torch::cat({tensor, tensor}, -1);  // two scales a row, one block
  }));
  EXPECT_NE(shapes.find("MXFP4 weight 'model.layers.1.mlp.experts.down_proj': model.layers.1.mlp.experts.down_proj_blocks "
                        "has shape [4, 64, 1, 16] and model.layers.1.mlp.experts.down_proj_scales [4, 64, 2]"),
            std::string::npos)
      << shapes;
  for (const std::string& which : {scales, std::string("model.layers.1.mlp.experts.down_proj_blocks")}) {
    const std::string dtype = load_error(copy_with("dtype", [&](io::NamedTensors& t) {
      for (auto& [name, tensor] : t)
        if (name == which) tensor = tensor.to(torch::kFloat);
    }));
    EXPECT_NE(dtype.find("model.safetensors: MXFP4 weight 'model.layers.1.mlp.experts.down_proj': "), std::string::npos) << dtype;
    EXPECT_NE(dtype.find(which == scales ? "must be uint8 (U8), found Byte and Float" : "must be uint8 (U8), found Float and Byte"),
              std::string::npos)
        << dtype;
  }

  merge::MergeOptions options;
  options.inputs = {kFixture.string()};
  options.method = "task-arithmetic";
  options.base = kMxfp4Fixture.string();
  options.out = test::scratch_dir() + "/merged.safetensors";
  const std::string merge = test::error_of([&] { merge::merge_checkpoints(options); });
  EXPECT_NE(merge.find("is an MXFP4-quantized weight"), std::string::npos) << merge;
  EXPECT_NE(merge.find("lofi export --format hf --dtype BF16 " + kMxfp4Fixture.string()), std::string::npos) << merge;
  EXPECT_FALSE(fs::exists(options.out));
  // As an input too, named by its file: the export takes the directory.
  options.method = "average";
  options.base.clear();
  options.inputs = {(kMxfp4Fixture / "model.safetensors").string(), (kMxfp4Fixture / "model.safetensors").string()};
  const std::string input = test::error_of([&] { merge::merge_checkpoints(options); });
  EXPECT_NE(input.find((kMxfp4Fixture / "model.safetensors").string() + ": tensor '"), std::string::npos) << input;
  EXPECT_NE(input.find("lofi export --format hf --dtype BF16 " + kMxfp4Fixture.string() + " OUT_DIR"), std::string::npos) << input;
  EXPECT_FALSE(fs::exists(options.out));
}

}  // namespace
}  // namespace lofi
