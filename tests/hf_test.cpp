// Hugging Face model directories: logits against models nobody here wrote (PyTorch building
// blocks: fixtures/hf/make_torch_reference.py; transformers itself: make_hf_fixtures.py),
// hub name variants, rejected settings, sharded sets and `lofi export`.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "lofi/data/token_shards.h"
#include "lofi/eval/perplexity.h"
#include "lofi/family/export.h"
#include "lofi/family/lm_model.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/io/safetensors_set.h"
#include "lofi/model/gemma3.h"
#include "lofi/model/hf.h"
#include "lofi/model/weights.h"
#include "lofi/train/config.h"
#include "lofi/train/trainer.h"
#include "test_util.h"

namespace lofi {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kFixtures = fs::path(LOFI_FIXTURES) / "hf";

model::CausalLm load(const std::string& dir) {
  train::ModelConfig c;
  c.init = dir;
  model::CausalLm lm = family::make_lm(c, 0);
  lm->eval();
  return lm;
}

// Max |lofi logits - reference logits| on the fixture's tokens.
double logit_error(model::CausalLmImpl& lm, const fs::path& fixture) {
  io::SafetensorsFile ref((fixture / "logits.safetensors").string());
  torch::NoGradGuard no_grad;
  torch::Tensor logits = lm.forward(ref.load("tokens"));
  torch::Tensor expected = ref.load("logits");
  EXPECT_EQ(logits.sizes(), expected.sizes());
  return (logits - expected).abs().max().item<double>();
}

json read_json(const fs::path& path) { return json::parse(io::read_text_file(path.string())); }

// Copies fixture NAME into a scratch directory, renaming or adding tensors with EDIT.
std::string edited_copy(const std::string& name, const std::string& to,
                        const std::function<void(io::NamedTensors&)>& edit) {
  fs::create_directories(to);
  fs::copy_file(kFixtures / "torch-ref" / name / "config.json", fs::path(to) / "config.json");
  io::NamedTensors tensors = io::SafetensorsFile((kFixtures / "torch-ref" / name / "model.safetensors").string()).load_all();
  edit(tensors);
  io::save_safetensors(to + "/model.safetensors", tensors);
  return to;
}

class TorchReference : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchReference, LogitsMatch) {
  const fs::path dir = kFixtures / "torch-ref" / GetParam();
  model::CausalLm lm = load(dir.string());
  EXPECT_EQ(lm->config.arch, read_json(dir / "config.json")["model_type"]);
  EXPECT_LE(logit_error(*lm, dir), 1e-4);
}

TEST_P(TorchReference, ExportReproducesTensorsAndConfig) {
  const fs::path dir = kFixtures / "torch-ref" / GetParam();
  const std::string out = test::scratch_dir() + "/hf";
  model::CausalLm lm = load(dir.string());
  model::export_hf(*lm, out, {});
  io::SafetensorsSet original(dir.string()), exported(out);
  ASSERT_EQ(exported.tensors().size(), original.tensors().size());
  for (const auto& t : original.tensors()) {
    const auto* e = exported.find(t.entry->name);
    ASSERT_NE(e, nullptr) << t.entry->name;
    EXPECT_TRUE(torch::equal(e->file->load(*e->entry), t.file->load(*t.entry))) << t.entry->name;
  }
  EXPECT_EQ(exported.files()[0]->metadata().at("format"), "pt");
  json want = read_json(dir / "config.json"), got = read_json(fs::path(out) / "config.json");
  for (auto it = want.begin(); it != want.end(); ++it) EXPECT_EQ(got[it.key()], it.value()) << it.key();
  EXPECT_LE(logit_error(*load(out), dir), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Hf, TorchReference, ::testing::Values("opt-pre", "opt-post", "gpt2"));

class Transformers : public ::testing::TestWithParam<std::string> {};

TEST_P(Transformers, LogitsAndExportMatch) {
  const fs::path dir = kFixtures / "transformers" / GetParam();
  ASSERT_TRUE(fs::exists(dir / "config.json"))
      << dir.string() << " is absent: run tests/fixtures/hf/make_hf_fixtures.py (scripts/install-deps.sh installs transformers)";
  model::CausalLm lm = load(dir.string());
  const double error = logit_error(*lm, dir);
  std::cout << GetParam() << ": lofi's max |logit diff| from transformers = " << error << "\n";
  EXPECT_LE(error, 1e-4);
  const std::string out = test::scratch_dir() + "/hf";
  model::export_hf(*lm, out, {});
  io::SafetensorsSet original(dir.string()), exported(out);
  for (const auto& t : original.tensors()) {
    const auto* e = exported.find(t.entry->name);
    ASSERT_NE(e, nullptr) << t.entry->name;
    EXPECT_TRUE(torch::equal(e->file->load(*e->entry).to(torch::kFloat), t.file->load(*t.entry).to(torch::kFloat)))
        << t.entry->name;
  }
  json want = read_json(dir / "config.json"), got = read_json(fs::path(out) / "config.json");
  for (const char* key : {"model_type", "architectures", "vocab_size", "hidden_size", "ffn_dim", "num_hidden_layers",
                          "num_attention_heads", "do_layer_norm_before", "word_embed_proj_dim", "n_embd", "n_layer",
                          "n_head", "n_positions", "activation_function", "layer_norm_epsilon", "intermediate_size",
                          "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "rope_parameters",
                          "attention_bias", "mlp_bias", "sliding_window", "use_sliding_window", "tie_word_embeddings",
                          "max_position_embeddings", "hidden_activation", "query_pre_attn_scalar",
                          "final_logit_softcapping", "attn_logit_softcapping", "num_experts", "num_local_experts",
                          "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob", "decoder_sparse_step",
                          "embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling",
                          "shared_expert_intermediate_size", "qkv_bias", "output_router_logits", "router_aux_loss_coef"})
    if (want.contains(key)) {
      if (std::string(key) == "rope_parameters")  // yarn's betas at transformers' defaults: written or not, the same
        for (const auto& [beta, fallback] : {std::pair<const char*, double>{"beta_fast", 32.0}, {"beta_slow", 1.0}})
          for (json* side : {&want, &got})
            if ((*side)[key].contains(beta) && (*side)[key][beta] == fallback) (*side)[key].erase(beta);
      EXPECT_EQ(got[key], want[key]) << key;
    }
  // transformers itself reads the export back: from_pretrained gives the fixture's logits.
  test::CommandResult hf = test::run_python("hf/check_hf_export.py", out + " " + (dir / "logits.safetensors").string());
  std::cout << hf.output;
  EXPECT_EQ(hf.status, 0) << hf.output;
}

// Llama-class fixtures: make_llama_fixtures.py (GQA, llama3 / linear rope scaling, head_dim,
// biases, tied and untied heads, a sliding window shorter than the sequence, a sharded set,
// Qwen3's norms of each query and key head, Gemma 3's sandwiched blocks with sliding and full
// layers rotated apart, Phi-3's fused projections, SmolLM3's layers without rotation, Phi-4-mini's
// partial rotation with longrope, Qwen3 with yarn, Qwen3-MoE's and Mixtral's experts, OLMo 2's
// norms after each branch and over all heads, Granite's four scalings, Gemma 2's soft caps,
// Qwen2-MoE's shared expert, gpt-oss's sinks and clamped 3-D experts, OLMoE's norms over all heads
// with pre-norm blocks and experts).
INSTANTIATE_TEST_SUITE_P(Hf, Transformers, ::testing::Values("opt-125m-like", "opt-350m-like", "gpt2", "llama-gqa",
                                                             "llama-bias", "qwen2", "mistral-window", "qwen3",
                                                             "gemma3", "phi3", "smollm3", "phi3-longrope", "qwen3-yarn",
                                                             "qwen3-moe", "mixtral", "olmo2", "granite", "gemma2",
                                                             "qwen2-moe", "gpt-oss", "olmoe"));

// Longrope's short factors within the original context (8 tokens in the fixture), its long ones
// past it (LogitsAndExportMatch's 16): both as transformers computes them, and they differ.
TEST(HfLongContext, LongropeModelsMatchWithinAndPastTheOriginalContext) {
  const fs::path dir = kFixtures / "transformers" / "phi3-longrope";
  model::CausalLm lm = load(dir.string());
  io::SafetensorsFile ref((dir / "logits.safetensors").string());
  torch::NoGradGuard no_grad;
  const torch::Tensor short_logits = lm->forward(ref.load("short_tokens"));
  const double error = (short_logits - ref.load("short_logits")).abs().max().item<double>();
  std::cout << "phi3-longrope, 8 tokens (short factors): max |logit diff| from transformers = " << error << "\n";
  EXPECT_LE(error, 1e-4);
  const torch::Tensor long_prefix = ref.load("logits").narrow(1, 0, 8);  // the same tokens, rotated by the long factors
  EXPECT_GT((short_logits - long_prefix).abs().max().item<double>(), 1e-2);
}

// Gemma 2's soft caps: with both off, lofi gives what transformers gives with both off (the
// fixture's uncapped_logits); each cap alone moves the logits, so LogitsAndExportMatch's
// agreement holds both. The fixture's caps (1.5 on scores, 2 on logits) bend its values.
TEST(HfSoftcapping, EachCapMattersAndUncappedMatchesTransformers) {
  const fs::path dir = kFixtures / "transformers" / "gemma2";
  model::CausalLm lm = load(dir.string());
  EXPECT_EQ(lm->config.attn_logit_softcapping, 1.5);
  EXPECT_EQ(lm->config.final_logit_softcapping, 2.0);
  io::SafetensorsFile ref((dir / "logits.safetensors").string());
  torch::NoGradGuard no_grad;
  const torch::Tensor tokens = ref.load("tokens"), capped = lm->forward(tokens);
  EXPECT_LE((capped - ref.load("logits")).abs().max().item<double>(), 1e-4);
  auto attention_cap = [&](double cap) {
    for (const auto& layer : *lm->decoder_blocks()) layer->as<model::Gemma3DecoderLayer>()->self_attn->softcap = cap;
  };
  attention_cap(0);
  const torch::Tensor no_score_cap = lm->forward(tokens);
  lm->config.final_logit_softcapping = 0;
  const torch::Tensor uncapped = lm->forward(tokens);
  attention_cap(1.5);
  const torch::Tensor no_logit_cap = lm->forward(tokens);
  const double error = (uncapped - ref.load("uncapped_logits")).abs().max().item<double>();
  std::cout << "gemma2, both caps off: max |logit diff| from transformers = " << error << "\n";
  EXPECT_LE(error, 1e-4);
  EXPECT_GT((no_score_cap - capped).abs().max().item<double>(), 1e-3);
  EXPECT_GT((no_logit_cap - capped).abs().max().item<double>(), 1e-2);
  // The loss through the chunked kernel is the cross-entropy of the capped logits.
  lm->config.final_logit_softcapping = 2.0;
  const torch::Tensor inputs = tokens.narrow(1, 0, 15), targets = tokens.narrow(1, 1, 15);
  const torch::Tensor logits = lm->forward(inputs);
  const torch::Tensor want = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}));
  EXPECT_LE((lm->loss(inputs, targets) - want).abs().item<double>(), 1e-5);
}

// Gemma 2's config.json as the hub's checkpoints carry it (transformers 4.42: top-level
// rope_theta, no layer_types, both caps): every other layer slides, the first among them.
TEST(HfSoftcapping, HubGemma2ConfigReadsAsTransformersReadsIt) {
  const json hub = json::parse(R"({"architectures": ["Gemma2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": 1,
    "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 2304, "initializer_range": 0.02, "intermediate_size": 9216, "max_position_embeddings": 8192,
    "model_type": "gemma2", "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
    "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096,
    "torch_dtype": "float32", "transformers_version": "4.42.4", "use_cache": true, "vocab_size": 256000})");
  const model::LmConfig c = model::lm_config_from_hf(hub, "gemma-2-2b/config.json");
  EXPECT_EQ(c.arch, "gemma2");
  EXPECT_EQ(c.attn_logit_softcapping, 50.0);
  EXPECT_EQ(c.final_logit_softcapping, 30.0);
  EXPECT_EQ(c.query_pre_attn_scalar, 256.0);
  EXPECT_EQ(c.head_width(), 256);
  EXPECT_EQ(c.kv_heads(), 4);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.activation, "gelu");
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(c.layer_window(i), i % 2 == 0 ? 4096 : 0) << i;
  // Written back, transformers 5's spelling reads the same; null caps are none.
  json written = json::parse(model::hf_config_json(c, "bfloat16").dump());
  EXPECT_EQ(written["layer_types"][0], "sliding_attention");
  EXPECT_EQ(written["layer_types"][1], "full_attention");
  const model::LmConfig again = model::lm_config_from_hf(written, "written");
  train::Config a, b;
  static_cast<model::LmConfig&>(a.model) = c;
  static_cast<model::LmConfig&>(b.model) = again;
  EXPECT_EQ(train::to_toml(a), train::to_toml(b));
  written["final_logit_softcapping"] = nullptr;
  EXPECT_EQ(model::lm_config_from_hf(written, "w").final_logit_softcapping, 0.0);
  // Scaled rotation is refused by name (Gemma 2's layers all turn unscaled).
  json scaled = hub;
  scaled["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  const std::string e = test::error_of([&] { model::lm_config_from_hf(scaled, "x/config.json"); });
  EXPECT_NE(e.find("x/config.json: \"rope_scaling.rope_type\": \"linear\" is not supported (lofi rotates Gemma 2's layers unscaled"),
            std::string::npos)
      << e;
  // Soft caps belong to Gemma: another architecture's config refuses them by name.
  const std::string other = test::error_of([] { train::load_config("", {"model.arch=llama", "model.final_logit_softcapping=30"}); });
  EXPECT_NE(other.find("final_logit_softcapping"), std::string::npos) << other;
}

// Vision-language checkpoints (Gemma 3 4B and larger: Gemma3ForConditionalGeneration; Mistral
// Small 3.1 and 3.2: Mistral3ForConditionalGeneration): lofi reads their language model
// (config.json's text_config; tensors "language_model.model.*" as the hub's files name them, or
// "model.language_model.*" as transformers 5's modules do) and gives transformers' logits for
// text; an export into that layout carries the vision tower, the projector and the config's other
// keys through unchanged, and transformers loads it back as the class it was.
struct WrappedFixture {
  const char* name;
  const char* arch;  // of the language model inside
  const char* hf_class;
};
class HfWrapped : public ::testing::TestWithParam<WrappedFixture> {};

TEST_P(HfWrapped, LanguageModelReadAndWrittenBackInPlace) {
  const fs::path fixture = kFixtures / "transformers" / GetParam().name;
  const std::string dir = test::scratch_dir();
  model::CausalLm lm = load(fixture.string());
  EXPECT_EQ(lm->config.arch, GetParam().arch);
  const double error = logit_error(*lm, fixture);
  std::cout << GetParam().name << ": lofi's max |logit diff| from transformers = " << error << "\n";
  EXPECT_LE(error, 1e-4);

  // transformers 5's module names.
  const std::string renamed = dir + "/renamed";
  fs::create_directories(renamed);
  fs::copy_file(fixture / "config.json", fs::path(renamed) / "config.json");
  io::NamedTensors tensors = io::SafetensorsFile((fixture / "model.safetensors").string()).load_all();
  for (auto& [name, t] : tensors)
    name = name.rfind("language_model.model.", 0) == 0 ? "model.language_model." + name.substr(21)
           : name.rfind("language_model.", 0) == 0     ? name.substr(15)  // language_model.lm_head.weight
                                                        : "model." + name;
  io::save_safetensors(renamed + "/model.safetensors", tensors);
  model::CausalLm other = load(renamed);
  EXPECT_EQ(logit_error(*other, fixture), error);

  // Fine-tuned weights go back in the source's names, beside its other tensors.
  {
    torch::NoGradGuard no_grad;
    lm->named_parameters()["model.norm.weight"].add_(0.5);
  }
  for (const std::string& source : {fixture.string(), renamed}) {
    const std::string out = dir + "/export-" + fs::path(source).filename().string();
    model::HfExportOptions options;
    options.source_dir = source;
    options.dtype = "BF16";
    model::export_hf(*lm, out, options);
    io::SafetensorsSet original(source), exported(out);
    EXPECT_EQ(exported.tensors().size(), original.tensors().size());
    for (const auto& t : original.tensors()) {
      const std::string& name = t.entry->name;
      const auto* e = exported.find(name);
      ASSERT_NE(e, nullptr) << name;
      EXPECT_EQ(e->entry->dtype, "BF16") << name;
      const torch::Tensor got = e->file->load(*e->entry).to(torch::kFloat),
                          was = t.file->load(*t.entry).to(torch::kBFloat16).to(torch::kFloat);
      const bool norm = name == "language_model.model.norm.weight" || name == "model.language_model.norm.weight";
      EXPECT_EQ(torch::equal(got, was), !norm) << name;
    }
    const json want = read_json(source + "/config.json"), got = read_json(out + "/config.json");
    for (const auto& [key, value] : want.items())
      if (key != "text_config" && key != "dtype" && key != "torch_dtype") {
        EXPECT_EQ(got[key], value) << key;
      }
    EXPECT_EQ(got["torch_dtype"], "bfloat16");
    for (const auto& [key, value] : want["text_config"].items())
      if (key != "dtype" && key != "torch_dtype") {
        EXPECT_EQ(got["text_config"][key], value) << key;
      }
    EXPECT_FALSE(got["text_config"].contains("architectures"));
    EXPECT_EQ(model::read_hf_config(out).d_model, lm->config.d_model);
  }
  // transformers loads the export and gives lofi's logits (the unchanged model's, exported in F32).
  const std::string out = dir + "/export-f32";
  model::HfExportOptions options;
  options.source_dir = fixture.string();
  model::export_hf(*load(fixture.string()), out, options);
  test::CommandResult hf = test::run_python("hf/check_hf_export.py", out + " " + (fixture / "logits.safetensors").string());
  std::cout << hf.output;
  EXPECT_EQ(hf.status, 0) << hf.output;
  EXPECT_NE(hf.output.find(GetParam().hf_class), std::string::npos) << hf.output;
}

INSTANTIATE_TEST_SUITE_P(Hf, HfWrapped,
                         ::testing::Values(WrappedFixture{"gemma3-vision", "gemma3_text", "Gemma3ForConditionalGeneration"},
                                           WrappedFixture{"mistral3-vision", "mistral", "Mistral3ForConditionalGeneration"}),
                         [](const auto& fixture) {
                           std::string name = fixture.param.name;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// A wrapper's config without the language model's, with another model inside, with settings lofi
// cannot honour inside, or disagreeing with it about the head, is refused by key; the hub's
// configs, which give only what differs from transformers' defaults, read as transformers reads them.
TEST(HfWrappedConfig, HubConfigsReadAndBadOnesNamed) {
  auto refused = [&](const char* fixture, const std::function<void(json&)>& edit) {
    json j = read_json(kFixtures / "transformers" / fixture / "config.json");
    edit(j);
    try {
      model::lm_config_from_hf(j, "x/config.json");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(refused("gemma3-vision", [](json& j) { j.erase("text_config"); })
                .find("x/config.json: a \"gemma3\" model keeps its language model's config under \"text_config\", which is absent"),
            std::string::npos);
  EXPECT_NE(refused("gemma3-vision", [](json& j) { j["text_config"]["model_type"] = "llama"; })
                .find("\"text_config.model_type\": \"llama\" inside a \"gemma3\" model; lofi reads \"gemma3_text\" there"),
            std::string::npos);
  EXPECT_NE(refused("gemma3-vision", [](json& j) { j["text_config"]["use_bidirectional_attention"] = true; })
                .find("\"text_config.use_bidirectional_attention\""),
            std::string::npos);
  const std::string unknown = refused("gemma3-vision", [](json& j) { j["model_type"] = "paligemma"; });
  EXPECT_NE(unknown.find("\"model_type\": \"paligemma\" is not supported (lofi reads \"gemma2\", \"gemma3_text\", \"gpt2\","), std::string::npos)
      << unknown;
  EXPECT_NE(unknown.find("and the language model of \"gemma3\" (gemma3_text inside), \"mistral3\" (mistral inside)"),
            std::string::npos)
      << unknown;
  EXPECT_NE(refused("mistral3-vision", [](json& j) { j["tie_word_embeddings"] = true; })
                .find("\"tie_word_embeddings\" is true but \"text_config.tie_word_embeddings\" is false"),
            std::string::npos);
  EXPECT_EQ(refused("mistral3-vision", [](json& j) { j["text_config"].erase("tie_word_embeddings"); }), "accepted");

  // Gemma 3 4B's config.json as the hub has it (text_config trimmed to what differs).
  json hub = read_json(kFixtures / "transformers" / "gemma3-vision" / "config.json");
  hub["text_config"] = {{"hidden_size", 2560}, {"intermediate_size", 10240}, {"model_type", "gemma3_text"}, {"num_hidden_layers", 34},
                        {"rope_scaling", {{"factor", 8.0}, {"rope_type", "linear"}}}, {"sliding_window", 1024}};
  hub.erase("tie_word_embeddings");
  const model::LmConfig four_b = model::lm_config_from_hf(hub, "gemma-3-4b/config.json");
  EXPECT_EQ(four_b.vocab_size, 262208);
  EXPECT_EQ(four_b.n_head, 8);
  EXPECT_EQ(four_b.kv_heads(), 4);
  EXPECT_EQ(four_b.head_width(), 256);
  EXPECT_EQ(four_b.sliding_window_pattern, 6);
  EXPECT_EQ(four_b.rope_factor, 8.0);
  EXPECT_EQ(four_b.rope_local_theta, 10000.0);
  EXPECT_TRUE(four_b.tie_word_embeddings);
}

TEST(HfNames, HubPrefixesBuffersAndTiedHead) {
  const std::string dir = test::scratch_dir();
  // GPT-2 as the hub stores it: no "transformer." prefix, mask buffers, the tied head written out.
  auto gpt2 = edited_copy("gpt2", dir + "/gpt2", [](io::NamedTensors& t) {
    torch::Tensor wte;
    for (auto& [name, tensor] : t) {
      name = name.substr(std::string("transformer.").size());
      if (name == "wte.weight") wte = tensor;
    }
    t.emplace_back("h.0.attn.bias", torch::ones({1, 1, 16, 16}).tril());
    t.emplace_back("h.1.attn.masked_bias", torch::tensor(-1e4));
    t.emplace_back("lm_head.weight", wte.clone());
  });
  EXPECT_LE(logit_error(*load(gpt2), kFixtures / "torch-ref" / "gpt2"), 1e-4);
  // OPT without "model.".
  auto opt = edited_copy("opt-post", dir + "/opt", [](io::NamedTensors& t) {
    for (auto& [name, tensor] : t) name = name.substr(std::string("model.").size());
  });
  EXPECT_LE(logit_error(*load(opt), kFixtures / "torch-ref" / "opt-post"), 1e-4);
  // A head that config.json ties but the file stores otherwise is refused, not silently replaced.
  auto untied = edited_copy("opt-pre", dir + "/untied", [](io::NamedTensors& t) {
    t.emplace_back("lm_head.weight", torch::zeros({64, 32}));
  });
  EXPECT_NE(test::error_of([&] { load(untied); }).find("lm_head.weight differs"), std::string::npos);
  // A tensor of another model is named.
  auto extra = edited_copy("opt-pre", dir + "/extra", [](io::NamedTensors& t) { t.emplace_back("score.weight", torch::zeros({2, 32})); });
  EXPECT_NE(test::error_of([&] { load(extra); }).find("score.weight"), std::string::npos);
}

TEST(HfConfig, UnsupportedSettingsAreNamed) {
  const json base = read_json(kFixtures / "torch-ref" / "gpt2" / "config.json");
  const json opt = read_json(kFixtures / "torch-ref" / "opt-pre" / "config.json");
  auto error = [](json j, const std::string& key, const json& value) {
    j[key] = value;
    return test::error_of([&] { model::lm_config_from_hf(j, "x/config.json"); });
  };
  for (const auto& [j, key, value] : std::vector<std::tuple<json, std::string, json>>{
           {base, "scale_attn_by_inverse_layer_idx", true},
           {base, "scale_attn_weights", false},
           {base, "activation_function", "gelu_fast"},
           {opt, "enable_bias", false},
           {opt, "layer_norm_elementwise_affine", false},
           {opt, "layerdrop", 0.1},
           {opt, "model_type", "gemma"}}) {
    std::string e = error(j, key, value);
    EXPECT_NE(e.find("x/config.json: \"" + key + "\": " + value.dump()), std::string::npos) << key << ": " << e;
  }
  EXPECT_NE(error(base, "n_embd", "32").find("\"n_embd\" expects an integer"), std::string::npos);
  // transformers' defaults fill absent keys: GPT-2's n_inner is 4 x n_embd.
  json no_inner = base;
  no_inner.erase("n_inner");
  EXPECT_EQ(model::lm_config_from_hf(no_inner, "c").d_ff, 4 * 32);
  // The resolved shape is what a run's config records.
  train::Config c = train::load_config("", {"model.init=" + (kFixtures / "torch-ref" / "opt-post").string(),
                                            "data.seq_len=16"});
  EXPECT_EQ(c.model.arch, "opt");
  EXPECT_FALSE(c.model.do_layer_norm_before);
  EXPECT_EQ(c.model.word_embed_proj_dim, 16);
  EXPECT_EQ(c.model.d_model, 32);
  EXPECT_DOUBLE_EQ(c.model.embedding_dropout, 0.0);
}

// Llama-class config.json as hub checkpoints spell it (transformers 4: rope_theta beside a
// rope_scaling object whose type may be "type") and as transformers 5 writes it (rope_parameters)
// give one model; what lofi cannot build is refused by file, key and value.
TEST(HfConfig, LlamaRopeSpellingsAndRefusals) {
  const json v5 = read_json(kFixtures / "transformers" / "llama-gqa" / "config.json");
  json v4 = v5;
  v4.erase("rope_parameters");
  v4["rope_theta"] = 500000.0;
  v4["rope_scaling"] = {{"type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                        {"original_max_position_embeddings", 16}};
  const model::LmConfig a = model::lm_config_from_hf(v5, "v5"), b = model::lm_config_from_hf(v4, "v4");
  EXPECT_EQ(a.arch, "llama");
  EXPECT_EQ(a.kv_heads(), 2);
  EXPECT_EQ(a.rope_scaling, "llama3");
  EXPECT_EQ(a.rope_original_max_positions, 16);
  EXPECT_FALSE(a.tie_word_embeddings);
  train::Config ca, cb;
  static_cast<model::LmConfig&>(ca.model) = a;
  static_cast<model::LmConfig&>(cb.model) = b;
  EXPECT_EQ(train::to_toml(ca), train::to_toml(cb));
  // The export writes both spellings; each reads back to the same config.
  const nlohmann::ordered_json written = model::hf_config_json(a, "float32");
  json only_v5 = json::parse(written.dump()), only_v4 = only_v5;
  only_v5.erase("rope_scaling");
  only_v5.erase("rope_theta");
  only_v4.erase("rope_parameters");
  for (const json& j : {only_v5, only_v4}) {
    train::Config c;
    static_cast<model::LmConfig&>(c.model) = model::lm_config_from_hf(j, "written");
    EXPECT_EQ(train::to_toml(c), train::to_toml(ca));
  }

  auto error = [](json j, const std::string& key, const json& value) {
    j[key] = value;
    return test::error_of([&] { model::lm_config_from_hf(j, "x/config.json"); });
  };
  const json qwen2 = read_json(kFixtures / "transformers" / "qwen2" / "config.json");
  const json qwen3 = read_json(kFixtures / "transformers" / "qwen3" / "config.json");
  const json gemma = read_json(kFixtures / "transformers" / "gemma3" / "config.json");
  const json gemma2 = read_json(kFixtures / "transformers" / "gemma2" / "config.json");
  const json phi3 = read_json(kFixtures / "transformers" / "phi3" / "config.json");
  const json smollm3 = read_json(kFixtures / "transformers" / "smollm3" / "config.json");
  for (const auto& [j, key, value] : std::vector<std::tuple<json, std::string, json>>{
           {smollm3, "use_sliding_window", true},
           {smollm3, "no_rope_layers", {1, 0, 0, 1}},
           {phi3, "resid_pdrop", 0.1},
           {phi3, "embd_pdrop", 0.1},
           {v5, "hidden_act", "gelu_fast"},
           {v5, "partial_rotary_factor", 0.5},
           {v5, "pretraining_tp", 2},
           {qwen2, "use_sliding_window", true},
           {qwen3, "use_sliding_window", true},
           {qwen3, "layer_types", {"full_attention", "sliding_attention"}},
           {gemma, "final_logit_softcapping", -1.0},
           {gemma, "attn_logit_softcapping", 0.0},
           {gemma, "use_bidirectional_attention", true},
           {gemma, "layer_types", {"full_attention", "sliding_attention", "sliding_attention"}},
           {gemma, "layer_types", {"sliding_attention", "full_attention"}}}) {
    std::string e = error(j, key, value);
    EXPECT_NE(e.find("x/config.json: \"" + key + "\": " + value.dump() + " is not supported"), std::string::npos) << e;
  }
  std::string e = error(v5, "rope_parameters", {{"rope_type", "proportional"}, {"factor", 4.0}});
  EXPECT_NE(e.find("x/config.json: \"rope_parameters.rope_type\": \"proportional\" is not supported (lofi has \"default\", "
                   "\"linear\", \"llama3\", \"yarn\", \"longrope\" and \"dynamic\")"),
            std::string::npos)
      << e;
  // Phi-3.5-mini's and Phi-4-mini's rotation: longrope factors, one per rotated frequency, and
  // only part of each head where the model's own code turns only part (Phi-3's, not Llama's).
  e = error(phi3, "rope_parameters", {{"rope_type", "longrope"}, {"rope_theta", 10000.0}, {"short_factor", {1.0}}, {"long_factor", {1.0}}});
  EXPECT_NE(e.find("x/config.json: \"rope_parameters.rope_type\": \"longrope\" is not supported (rope_short_factor has 1 number; "
                   "longrope needs one per rotated frequency, 4"),
            std::string::npos)
      << e;
  e = error(phi3, "rope_parameters", {{"rope_type", "longrope"}, {"rope_theta", 10000.0}, {"short_factor", {1.0, 1.0, 1.0, 1.0}}});
  EXPECT_NE(e.find("x/config.json: \"rope_parameters.long_factor\": (default) is not supported (longrope needs a list of numbers"),
            std::string::npos)
      << e;
  e = error(v5, "rope_parameters", {{"rope_type", "default"}, {"rope_theta", 10000.0}, {"partial_rotary_factor", 0.75}});
  EXPECT_NE(e.find("\"rope_parameters.partial_rotary_factor\": 0.75 is not supported (\"llama\" rotates whole heads, as transformers' "
                   "model of it does)"),
            std::string::npos)
      << e;
  EXPECT_EQ(error(phi3, "rope_parameters", {{"rope_type", "default"}, {"rope_theta", 10000.0}, {"partial_rotary_factor", 0.75}}), "");
  EXPECT_EQ(error(v4, "rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}), "");
  e = error(v5, "num_key_value_heads", 3);
  EXPECT_NE(e.find("x/config.json: \"num_key_value_heads\": 3 is not supported (it must divide num_attention_heads = 4"),
            std::string::npos)
      << e;
  e = error(v5, "model_type", "gemma");
  EXPECT_NE(e.find("\"model_type\": \"gemma\" is not supported (lofi reads \"gemma2\", \"gemma3_text\", \"gpt2\", \"gpt_oss\", \"granite\", \"llama\", \"mistral\", "
                   "\"mixtral\", \"olmo2\", \"olmoe\", \"opt\", \"phi3\", \"qwen2\", \"qwen2_moe\", \"qwen3\", \"qwen3_moe\", \"smollm3\"; and the language model of \"gemma3\" (gemma3_text inside), \"mistral3\" (mistral inside))"),
            std::string::npos)
      << e;
  // Qwen3's head_dim: absent is transformers' default of 128, not hidden_size / heads; its
  // query/key norms come with the model type.
  json no_head_dim = qwen3;
  no_head_dim.erase("head_dim");
  EXPECT_EQ(model::lm_config_from_hf(no_head_dim, "q").head_width(), 128);
  EXPECT_EQ(model::lm_config_from_hf(qwen3, "q").head_width(), 16);
  EXPECT_TRUE(model::lm_config_from_hf(qwen3, "q").qk_norm);
  EXPECT_FALSE(model::lm_config_from_hf(qwen2, "q").qk_norm);
  // Gemma 3 as transformers 4.5x writes it (top-level rotary keys, a pattern instead of
  // layer_types) reads as transformers 5's; its own export reads back the same either way.
  const model::LmConfig g = model::lm_config_from_hf(gemma, "g");
  EXPECT_EQ(g.sliding_window_pattern, 2);
  EXPECT_EQ(g.layer_window(0), 6);
  EXPECT_EQ(g.layer_window(1), 0);
  EXPECT_EQ(g.rope_scaling, "linear");
  EXPECT_EQ(g.rope_local_theta, 10000.0);
  EXPECT_EQ(g.activation, "gelu");
  json hub = gemma;
  hub.erase("rope_parameters");
  hub.erase("layer_types");
  hub["rope_theta"] = 1e6;
  hub["rope_local_base_freq"] = 10000.0;
  hub["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  hub["sliding_window_pattern"] = 2;
  const json gemma_written = json::parse(model::hf_config_json(g, "float32").dump());
  for (const json& j : {hub, gemma_written}) {
    train::Config cg, c;
    static_cast<model::LmConfig&>(cg.model) = g;
    static_cast<model::LmConfig&>(c.model) = model::lm_config_from_hf(j, "hub");
    EXPECT_EQ(train::to_toml(c), train::to_toml(cg));
  }
  // Mistral's window: absent is transformers' default of 4096, null is none.
  json mistral = read_json(kFixtures / "transformers" / "mistral-window" / "config.json");
  EXPECT_EQ(model::lm_config_from_hf(mistral, "m").sliding_window, 6);
  mistral["sliding_window"] = nullptr;
  EXPECT_EQ(model::lm_config_from_hf(mistral, "m").sliding_window, 0);
  mistral.erase("sliding_window");
  EXPECT_EQ(model::lm_config_from_hf(mistral, "m").sliding_window, 4096);
  // Settings of one architecture given to another are named.
  e = test::error_of([] { train::load_config("", {"model.arch=gpt2", "model.n_kv_head=2"}); });
  EXPECT_NE(e.find("n_kv_head = 2 does not apply to arch \"gpt2\""), std::string::npos) << e;
  e = test::error_of([] { train::load_config("", {"model.arch=llama", "model.dropout=0.1"}); });
  EXPECT_NE(e.find("arch \"llama\" has no residual or embedding dropout"), std::string::npos) << e;
}

// Untied heads: a checkpoint of an untied model without its lm_head.weight is refused by name;
// with it, the head is the model's own and not the embedding.
TEST(HfNames, UntiedHeadIsLoadedAndRequired) {
  const fs::path fixture = kFixtures / "transformers" / "llama-gqa";
  model::CausalLm lm = load(fixture.string());
  ASSERT_TRUE(lm->lm_head);
  EXPECT_FALSE(torch::equal(lm->lm_head->weight, lm->token_embedding()));
  EXPECT_TRUE(io::SafetensorsFile((fixture / "model.safetensors").string()).load("lm_head.weight").equal(lm->lm_head->weight));
  const std::string dir = test::scratch_dir() + "/headless";
  fs::create_directories(dir);
  fs::copy_file(fixture / "config.json", dir + "/config.json");
  io::NamedTensors tensors = io::SafetensorsFile((fixture / "model.safetensors").string()).load_all();
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [](const auto& t) { return t.first == "lm_head.weight"; }),
                tensors.end());
  io::save_safetensors(dir + "/model.safetensors", tensors);
  const std::string e = test::error_of([&] { load(dir); });
  EXPECT_NE(e.find("missing tensor 'lm_head.weight'"), std::string::npos) << e;
}

TEST(HfShards, ShardedExportLoadsAndBadIndexesAreNamed) {
  const std::string dir = test::scratch_dir();
  const fs::path ref = kFixtures / "torch-ref" / "gpt2";
  model::CausalLm lm = load(ref.string());
  model::HfExportOptions options;
  options.shard_bytes = 8000;
  model::export_hf(*lm, dir + "/sharded", options);
  io::SafetensorsSet set(dir + "/sharded");
  EXPECT_GT(set.files().size(), 2u);
  EXPECT_LE(logit_error(*load(dir + "/sharded"), ref), 1e-4);
  const std::string first_shard = fs::path(set.files()[0]->path()).filename().string();
  ASSERT_EQ(set.find("transformer.ln_f.bias")->file, set.files().back().get());

  auto index_error = [&](const std::function<void(json&)>& edit) {  // the error of an edited copy
    fs::remove_all(dir + "/bad");
    fs::copy(dir + "/sharded", dir + "/bad");
    json index = read_json(dir + "/bad/model.safetensors.index.json");
    edit(index);
    std::ofstream(dir + "/bad/model.safetensors.index.json") << index.dump();
    return test::error_of([&] { io::SafetensorsSet s(dir + "/bad"); });
  };
  EXPECT_NE(index_error([](json& j) { j["weight_map"]["transformer.wte.weight"] = "model-00099-of-00099.safetensors"; })
                .find("does not exist"), std::string::npos);
  EXPECT_NE(index_error([&](json& j) { j["weight_map"]["transformer.ln_f.bias"] = first_shard; })
                .find("transformer.ln_f.bias"), std::string::npos);
  EXPECT_NE(index_error([&](json& j) { j["weight_map"]["ghost"] = first_shard; }).find("'ghost'"),
            std::string::npos);
  EXPECT_NE(index_error([](json& j) { j["weight_map"]["transformer.wte.weight"] = "../x"; }).find("plain file names"),
            std::string::npos);
}

TEST(HfExport, CheckpointWithRunConfigCarriesTokenizer) {
  const std::string dir = test::scratch_dir();
  // A run's HF directory, with tokenizer files beside the model.
  fs::copy(kFixtures / "torch-ref" / "opt-post", dir + "/base");
  std::ofstream(dir + "/base/vocab.json") << "{\"a\": 0}\n";
  std::ofstream(dir + "/base/merges.txt") << "#version: 0.2\n";
  train::Config config = train::load_config("", {"model.init=" + dir + "/base", "data.seq_len=16"});
  model::CausalLm lm = family::make_lm(config.model, 0);
  io::save_safetensors(dir + "/final.safetensors", model::module_weights(*lm), {{"lofi.config", train::to_toml(config)}});
  family::ExportOptions options;
  options.dtype = "BF16";
  family::export_checkpoint(dir + "/final.safetensors", dir + "/out", options);
  EXPECT_EQ(io::read_text_file(dir + "/out/vocab.json"), "{\"a\": 0}\n");
  EXPECT_TRUE(fs::exists(dir + "/out/merges.txt"));
  json got = read_json(dir + "/out/config.json");
  EXPECT_EQ(got["torch_dtype"], "bfloat16");
  EXPECT_EQ(got["word_embed_proj_dim"], 16);
  EXPECT_EQ(got["pad_token_id"], 1);
  io::SafetensorsSet out(dir + "/out");
  EXPECT_EQ(out.tensors()[0].entry->dtype, "BF16");
  // The output directory appears whole or not at all, and is never overwritten.
  EXPECT_NE(test::error_of([&] { family::export_checkpoint(dir + "/final.safetensors", dir + "/out", {}); }).find("exists"),
            std::string::npos);
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos);
}

// A full fine-tune's checkpoint is exported by streaming its tensors, without building the model:
// the directory equals what the built model writes (the path a LoRA checkpoint still takes), the
// automatic outputs shard as Hugging Face does past the shard size, and a file whose weights do not
// count its config's model is refused before anything is written.
TEST(HfExport, StreamedExportEqualsTheBuiltModelsAndShardsPastTheSize) {
  const std::string dir = test::scratch_dir();
  for (const char* fixture : {"opt-post", "gpt2"}) {
    SCOPED_TRACE(fixture);
    const std::string run = dir + "/" + fixture;
    fs::create_directories(run);
    train::Config config = train::load_config("", {"model.init=" + (kFixtures / "torch-ref" / fixture).string(), "data.seq_len=16"});
    model::CausalLm lm = family::make_lm(config.model, 0);
    io::save_safetensors(run + "/final.safetensors", model::module_weights(*lm), {{"lofi.config", train::to_toml(config)}});
    family::export_checkpoint(run + "/final.safetensors", run + "/streamed", {});
    model::HfExportOptions hf;
    hf.source_dir = (kFixtures / "torch-ref" / fixture).string();
    model::export_hf(*lm, run + "/built", hf);
    io::SafetensorsSet streamed(run + "/streamed"), built(run + "/built");
    ASSERT_EQ(streamed.tensors().size(), built.tensors().size());
    for (const auto& t : built.tensors()) {
      ASSERT_NE(streamed.find(t.entry->name), nullptr) << t.entry->name;
      EXPECT_TRUE(torch::equal(streamed.find(t.entry->name)->file->load(*streamed.find(t.entry->name)->entry), t.file->load(*t.entry)))
          << t.entry->name;
    }
    EXPECT_EQ(read_json(run + "/streamed/config.json"), read_json(run + "/built/config.json"));
    // Past the shard size: Hugging Face's shards and index, the same tensors; within it, one file.
    const int64_t bytes = static_cast<int64_t>(io::SafetensorsFile(run + "/final.safetensors").data_bytes());
    family::write_hf_output(run + "/final.safetensors", run + "/sharded", bytes / 3);
    EXPECT_TRUE(fs::exists(run + "/sharded/model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(run + "/sharded/model.safetensors"));
    io::SafetensorsSet sharded(run + "/sharded");
    EXPECT_GE(sharded.files().size(), 3u);
    for (const auto& t : built.tensors())
      EXPECT_TRUE(torch::equal(sharded.find(t.entry->name)->file->load(*sharded.find(t.entry->name)->entry), t.file->load(*t.entry)));
    family::write_hf_output(run + "/final.safetensors", run + "/single");
    EXPECT_TRUE(fs::exists(run + "/single/model.safetensors"));
    EXPECT_FALSE(fs::exists(run + "/single/model.safetensors.index.json"));
    // A tensor short: refused, naming the counts, nothing written.
    io::NamedTensors fewer = model::module_weights(*lm);
    fewer.pop_back();
    io::save_safetensors(run + "/fewer.safetensors", fewer, {{"lofi.config", train::to_toml(config)}});
    const std::string e = test::error_of([&] { family::export_checkpoint(run + "/fewer.safetensors", run + "/fewer", {}); });
    EXPECT_NE(e.find("fewer.safetensors holds"), std::string::npos) << e;
    EXPECT_NE(e.find("give a checkpoint written with that config"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(run + "/fewer"));
  }
}

// A run from a Hugging Face directory: the config records the resolved model, the run hands its
// result back as a directory transformers loads, and `lofi export` does the same for any checkpoint.
TEST(CliHf, RunFromHfDirectoryWritesHfOutputs) {
  const std::string dir = test::scratch_dir();
  test::write_fixture_tokens(dir);
  const std::string init = (kFixtures / "torch-ref" / "gpt2").string();
  auto r = test::run_lofi("train --quiet --set model.init=" + init + " --set data.train=" + dir + "/tokens.bin --set run.dir=" +
                          dir + "/run --set data.seq_len=16 --set train.batch_size=4 --set train.steps=2 --set train.threads=1");
  ASSERT_EQ(r.status, 0) << r.output;
  train::Config as_run;
  train::apply_toml_file(as_run, dir + "/run/config.toml");
  EXPECT_EQ(as_run.model.arch, "gpt2");
  EXPECT_EQ(as_run.model.d_model, 32);
  EXPECT_DOUBLE_EQ(as_run.model.embedding_dropout, 0.1);
  const std::string out = dir + "/run/node-00/final-hf";
  EXPECT_EQ(read_json(out + "/config.json")["model_type"], "gpt2");
  // The exported weights are the final ones.
  io::SafetensorsFile final_file(dir + "/run/node-00/final.safetensors");
  io::SafetensorsSet hf(out);
  for (const auto& e : final_file.entries()) {
    ASSERT_NE(hf.find(e.name), nullptr) << e.name;
    EXPECT_TRUE(torch::equal(hf.find(e.name)->file->load(*hf.find(e.name)->entry), final_file.load(e))) << e.name;
  }
  r = test::run_lofi("export --format hf " + dir + "/run/node-00/final.safetensors " + dir + "/exported --dtype F16");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_json(dir + "/exported/config.json")["torch_dtype"], "float16");
  io::save_safetensors(dir + "/bare.safetensors", {{"w", torch::ones({2})}});
  r = test::run_lofi("export --format hf " + dir + "/bare.safetensors " + dir + "/bare");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("no lofi.config"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/bare"));
}

// The pretrained model before fine-tuning: `lofi eval --model DIR` takes a Hugging Face directory
// as published and scores what the library scores for the model that directory makes.
TEST(CliHf, EvalTakesAHuggingFaceDirectory) {
  const std::string dir = test::scratch_dir();
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < 3000; ++i) ids.push_back((i * 11 + i / 7) % 64);
  data::write_token_shard(dir + "/val.bin", ids);
  const std::string init = (kFixtures / "transformers" / "opt-125m-like").string();
  auto r = test::run_lofi("eval --model " + init + " --data val=" + dir + "/val.bin --seq-len 16 --batch 8 --json " + dir + "/eval.json");
  ASSERT_EQ(r.status, 0) << r.output;
  const double cli = read_json(dir + "/eval.json")["results"][0]["datasets"]["val"]["loss"];
  train::ModelConfig m;
  m.init = init;
  model::CausalLm lm = family::make_lm(m, 0);
  const double library = eval::evaluate_lm(*lm, data::TokenShards({dir + "/val.bin"}, 64), 16, 8, 0).loss;
  EXPECT_EQ(cli, library);
  EXPECT_GT(cli, 0.0);
}

// An average of Hugging Face model directories is one too (weights, config.json, tokenizer files),
// which eval takes as it is; directories with different tokenizers are refused unless --force.
TEST(CliHf, AveragingModelDirectoriesWritesOne) {
  const std::string dir = test::scratch_dir();
  const fs::path fixture = kFixtures / "transformers" / "opt-125m-like";
  for (const char* copy : {"a", "b"}) {
    fs::copy(fixture, fs::path(dir) / copy);
    std::ofstream(fs::path(dir) / copy / "tokenizer.json") << R"({"model": {"type": "BPE"}})";
  }
  auto r = test::run_lofi("average " + dir + "/a " + dir + "/b --out " + dir + "/avg");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* f : {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json"})
    EXPECT_TRUE(fs::exists(fs::path(dir) / "avg" / f)) << f;
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < 2000; ++i) ids.push_back((i * 5 + i / 3) % 64);
  data::write_token_shard(dir + "/val.bin", ids);
  auto scored = [&](const std::string& model) {
    auto e = test::run_lofi("eval --model " + model + " --data val=" + dir + "/val.bin --seq-len 16 --json " + dir + "/e.json");
    EXPECT_EQ(e.status, 0) << e.output;
    return read_json(dir + "/e.json")["results"][0]["datasets"]["val"]["loss"].get<double>();
  };
  EXPECT_EQ(scored(dir + "/avg"), scored(fixture.string()));  // the mean of two equal models is that model
  std::ofstream(fs::path(dir) / "b" / "tokenizer.json") << R"({"model": {"type": "Unigram"}})";
  auto refused = test::run_lofi("average " + dir + "/a " + dir + "/b --out " + dir + "/avg2");
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.output.find("tokenizer.json differs between " + dir + "/a and " + dir + "/b"), std::string::npos) << refused.output;
  EXPECT_FALSE(fs::exists(dir + "/avg2"));
  EXPECT_EQ(test::run_lofi("average " + dir + "/a " + dir + "/b --force --out " + dir + "/avg2").status, 0);
}

// A lo-fi job from a Hugging Face directory merges its nodes into merged-hf/, which transformers
// loads with exactly the merged weights.
class LofiRunFromHf : public ::testing::TestWithParam<std::string> {};

TEST_P(LofiRunFromHf, WritesMergedHf) {
  const std::string dir = test::scratch_dir();
  test::write_fixture_tokens(dir);
  const std::string init = (kFixtures / "transformers" / GetParam()).string();
  auto r = test::run_lofi("launch --workers 2 -- train --quiet --set model.init=" + init + " --set data.train=" + dir +
                          "/tokens.bin --set run.dir=" + dir + "/run --set data.seq_len=16 --set train.batch_size=4"
                          " --set train.steps=2 --set dist.nodes=2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/run/node-00/final-hf"));  // a merging job hands back the merge
  EXPECT_EQ(read_json(dir + "/run/merged-hf/config.json")["model_type"], read_json(init + "/config.json")["model_type"]);
  EXPECT_FALSE(read_json(dir + "/run/merged-hf/config.json").contains("quantization_config"));  // written dequantized
  test::CommandResult hf = test::run_python("hf/check_same_weights.py", dir + "/run/merged-hf " + dir + "/run/merged.safetensors");
  std::cout << hf.output;
  EXPECT_EQ(hf.status, 0) << hf.output;
}

// OPT (tied head), Llama with grouped-query attention and an untied head (its lm_head.weight
// trained, merged and handed back like every other tensor), Qwen3 (its query/key norms trained
// and merged too), Gemma 3 (norms that start at 0, sliding and full layers) and Gemma 3 with its
// vision tower (merged-hf is the vision-language model again), Qwen3-MoE (router and experts
// averaged, and written per expert as its checkpoints are), OLMo 2, Granite, Gemma 2 (trained
// through its soft caps), Qwen2-MoE and gpt-oss (its sinks and 3-D experts trained and averaged;
// and from its experts in MXFP4, as published, to a dequantized merged-hf).
INSTANTIATE_TEST_SUITE_P(CliHf, LofiRunFromHf, ::testing::Values("opt-125m-like", "llama-gqa", "qwen3", "gemma3", "gemma3-vision",
                                                                       "mistral3-vision", "phi3", "qwen3-moe", "olmo2", "granite",
                                                                       "gemma2", "qwen2-moe", "gpt-oss", "olmoe", "gpt-oss-mxfp4"));

}  // namespace
}  // namespace lofi

namespace lofi {
namespace {

// The pretrained model beside its fine-tune, as users compare them: `eval --ensemble`, `soup` and
// `interpolate` take a Hugging Face directory as one of their models. The weight average in eval
// and the midpoint of the line are one computation by two paths, and the line's ends are the
// models eval scores on their own.
class PretrainedBeside : public ::testing::TestWithParam<std::string> {};

TEST_P(PretrainedBeside, SoupInterpolateAndEnsembleTakeAHuggingFaceDirectory) {
  const std::string dir = test::scratch_dir();
  test::write_fixture_tokens(dir);
  const std::string init = (kFixtures / GetParam()).string(), data = " --data val=" + dir + "/tokens.bin";
  auto r = test::run_lofi("train --quiet --set model.init=" + init + " --set data.train=" + dir + "/tokens.bin --set run.dir=" +
                          dir + "/run --set data.seq_len=16 --set train.batch_size=4 --set train.steps=3 --set train.lr=0.01" +
                          " --set train.threads=1");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string tuned = dir + "/run/node-00/final.safetensors", flags = data + " --seq-len 16 --batch 4 --max-windows 16";

  r = test::run_lofi("eval --ensemble " + init + " " + tuned + flags + " --json " + dir + "/eval.json");
  ASSERT_EQ(r.status, 0) << r.output;
  const json rows = read_json(dir + "/eval.json")["results"];
  ASSERT_EQ(rows.size(), 4u);  // each member, their ensemble, their weight average
  auto loss = [](const json& row) { return row["datasets"]["val"]["loss"].get<double>(); };
  EXPECT_NE(loss(rows[0]), loss(rows[1]));  // fine-tuning changed the model

  r = test::run_lofi("interpolate " + init + " " + tuned + " --points 3" + flags + " --json " + dir + "/line.json");
  ASSERT_EQ(r.status, 0) << r.output;
  const json points = read_json(dir + "/line.json")["points"];
  ASSERT_EQ(points.size(), 3u);
  EXPECT_NEAR(points[0]["metrics"]["loss/val"].get<double>(), loss(rows[0]), 1e-6);  // the directory itself
  EXPECT_NEAR(points[2]["metrics"]["loss/val"].get<double>(), loss(rows[1]), 1e-6);
  EXPECT_NEAR(points[1]["metrics"]["loss/val"].get<double>(), loss(rows[3]), 1e-6);  // midpoint = the weight average

  r = test::run_lofi("soup " + init + " " + tuned + flags + " --out " + dir + "/soup.safetensors");
  ASSERT_EQ(r.status, 0) << r.output;
  r = test::run_lofi("eval --model " + dir + "/soup.safetensors" + flags + " --json " + dir + "/soup.json");
  ASSERT_EQ(r.status, 0) << r.output;  // the soup carries the shape the directory gave
  const double soup_loss = read_json(dir + "/soup.json")["results"][0]["datasets"]["val"]["loss"];
  EXPECT_LE(soup_loss, std::min(loss(rows[0]), loss(rows[1])) + 1e-6);  // greedy: never worse than its best start
}

// GPT-2 (tied head), and Mistral with an untied head and a sliding window, published in shards.
INSTANTIATE_TEST_SUITE_P(CliHf, PretrainedBeside, ::testing::Values("torch-ref/gpt2", "transformers/mistral-window"));

}  // namespace
}  // namespace lofi
