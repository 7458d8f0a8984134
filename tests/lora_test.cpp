// LoRA: lofi's adapters against PEFT itself (fixtures/lora/make_lora_fixtures.py made PEFT's
// adapters and logits; check_with_peft.py has PEFT read what lofi writes), the adapter merges
// against the dense average they stand for, and LoRA runs (only what trains is stored; lo-fi nodes
// merged exactly).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "lofi/data/token_shards.h"
#include "lofi/demo/synthetic_images.h"
#include "lofi/family/adapters.h"
#include "lofi/family/image_task.h"
#include "lofi/family/lm_model.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/merge/adapters.h"
#include "lofi/merge/agreement.h"
#include "lofi/model/linear.h"
#include "lofi/model/lora.h"
#include "lofi/model/vit.h"
#include "lofi/model/vit_checkpoint.h"
#include "lofi/model/weights.h"
#include "lofi/run/run_dir.h"
#include "lofi/train/config.h"
#include "cpu_bytes.h"
#include "test_util.h"

namespace lofi {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
const fs::path kFixtures = fs::path(LOFI_FIXTURES);
const fs::path kBases = kFixtures / "hf" / "transformers";

model::CausalLm load_base(const std::string& name) {
  train::Config c = train::config_for_model((kBases / name).string(), "", {});
  return family::make_lm(c.model, 0);
}

torch::Tensor logits_of(model::CausalLmImpl& lm, const torch::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  lm.eval();
  return lm.forward(tokens);
}

// A PEFT fixture copied to a scratch directory with its base's absolute path in adapter_config.json.
std::string placed_fixture(const std::string& name) {
  const std::string dir = test::scratch_dir() + "/" + name;
  fs::copy(kFixtures / "lora" / name, dir, fs::copy_options::recursive);
  json config = json::parse(io::read_text_file(dir + "/adapter_config.json"));
  config["base_model_name_or_path"] = (kFixtures / config["base_model_name_or_path"].get<std::string>()).string();
  io::write_file_atomic(dir + "/adapter_config.json", config.dump(2));
  return dir;
}

// Random adapters of SPEC on MODEL: A as PEFT draws it from SEED, B random too (a trained adapter's
// B is not zero, and a zero B would hide a wrong B).
io::LoraAdapter random_adapter(model::CausalLmImpl& lm, const io::LoraSpec& spec, uint64_t seed) {
  model::apply_lora(lm, spec, seed);
  torch::NoGradGuard no_grad;
  torch::manual_seed(static_cast<int64_t>(seed));
  for (auto& [name, t] : model::trainable_weights(lm))
    if (name.find("lora_B") != std::string::npos) t.normal_(0.0, 0.2);
  io::LoraAdapter a;
  a.spec = spec;
  a.spec.fan_in_fan_out = model::lora_fan_in_fan_out(lm);
  a.tensors = model::trainable_weights(lm);
  for (auto& [name, t] : a.tensors) t = t.clone();
  a.source = "random adapter " + std::to_string(seed);
  return a;
}

io::LoraSpec spec_of(int64_t r, double alpha, std::vector<std::string> targets, const std::string& base) {
  io::LoraSpec s;
  s.r = r;
  s.alpha = alpha;
  s.target_modules = std::move(targets);
  s.base_model = base;
  s.task_type = "CAUSAL_LM";
  return s;
}

// Each adapted layer's dense change (out, in) once ADAPTER is loaded on a fresh BASE.
std::map<std::string, torch::Tensor> deltas(const std::string& base, const io::LoraAdapter& adapter) {
  model::CausalLm lm = load_base(base);
  model::load_lora_adapter(*lm, adapter);
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : lm->named_modules("", false))
    if (auto* layer = dynamic_cast<model::AdaptableLinearImpl*>(item.value().get()); layer && layer->has_lora())
      out[item.key()] = layer->lora_delta();
  return out;
}

double max_diff(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
  double worst = 0;
  for (const auto& [name, t] : a) worst = std::max(worst, (t - b.at(name)).abs().max().item<double>());
  return worst;
}

class PeftFixture : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(PeftFixture, LofiGivesPeftsLogits) {
  const auto [name, base] = GetParam();
  model::CausalLm lm = load_base(base);
  const io::LoraAdapter adapter = io::read_lora_adapter((kFixtures / "lora" / name).string());
  model::load_lora_adapter(*lm, adapter);
  io::SafetensorsFile ref((kFixtures / "lora" / name / "logits.safetensors").string());
  const double diff = (logits_of(*lm, ref.load("tokens")) - ref.load("logits")).abs().max().item<double>();
  std::cout << name << ": max |lofi - PEFT logits| = " << diff << "\n";
  EXPECT_LE(diff, 1e-5);
  // The adapter changes the model: the base alone is far from PEFT's logits.
  model::CausalLm plain = load_base(base);
  EXPECT_GT((logits_of(*plain, ref.load("tokens")) - ref.load("logits")).abs().max().item<double>(), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Lora, PeftFixture,
                         ::testing::Values(std::make_pair("opt", "opt-125m-like"), std::make_pair("gpt2", "gpt2"),
                                           std::make_pair("llama-gqa", "llama-gqa"), std::make_pair("qwen2", "qwen2"),
                                           std::make_pair("mistral", "mistral-window"), std::make_pair("qwen3", "qwen3"),
                                           std::make_pair("gemma3", "gemma3"), std::make_pair("phi3", "phi3"),
                                           std::make_pair("smollm3", "smollm3"), std::make_pair("gemma2", "gemma2"),
                                           std::make_pair("qwen2-moe", "qwen2-moe"), std::make_pair("gpt-oss", "gpt-oss"),
                                           std::make_pair("olmoe", "olmoe")));

// timm's DeiT with a PEFT adapter on qkv and fc2 and a saved, changed head.
TEST(Lora, LofiGivesPeftsLogitsOnTimmsVit) {
  model::Vit vit(model::vit_config_preset("vit_test_patch8_32"));
  model::load_vit_checkpoint(vit, io::SafetensorsFile((kFixtures / "vit" / "timm_deit" / "model.safetensors").string()));
  vit->eval();
  io::SafetensorsFile ref((kFixtures / "lora" / "vit" / "io.safetensors").string());
  torch::NoGradGuard no_grad;
  // The adapter and the changed head matter: the base alone is far from PEFT's logits.
  EXPECT_GT((vit->forward(ref.load("images")) - ref.load("logits")).abs().max().item<double>(), 1e-3);
  model::load_lora_adapter(*vit, io::read_lora_adapter((kFixtures / "lora" / "vit").string()));
  const double diff = (vit->forward(ref.load("images")) - ref.load("logits")).abs().max().item<double>();
  std::cout << "vit: max |lofi - PEFT logits| = " << diff << "\n";
  EXPECT_LE(diff, 1e-5);
}

// model.dtype = "bf16": the base is made in bf16 and the checkpoint loaded straight into it, equal
// to loading in fp32 and casting; what then trains (a saved module) is fp32.
TEST(Lora, ABf16BaseIsMadeInBf16) {
  train::Config c = train::config_for_model((kBases / "llama-gqa").string(), "", {});
  c.model.dtype = "bf16";
  model::CausalLm bf16 = family::make_lm(c.model, 0);
  model::CausalLm fp32 = load_base("llama-gqa");
  EXPECT_EQ(torch::get_default_dtype(), caffe2::TypeMeta::Make<float>());  // restored after
  std::map<std::string, torch::Tensor> wide;
  for (const auto& item : fp32->named_parameters()) wide[item.key()] = item.value();
  for (const auto& item : bf16->named_parameters()) {
    EXPECT_EQ(item.value().scalar_type(), torch::kBFloat16) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), wide.at(item.key()).to(torch::kBFloat16))) << item.key();
  }
  c.lora.rank = 2;
  c.lora.target = "q_proj";
  c.lora.modules_to_save = "lm_head";
  family::attach_lora(*bf16, c, true);
  for (const auto& item : bf16->named_parameters())
    EXPECT_EQ(item.value().scalar_type(), item.value().requires_grad() ? torch::kFloat : torch::kBFloat16) << item.key();
  EXPECT_TRUE(bf16->lm_head->weight.requires_grad());
}

// A LoRA layer over a bf16 base keeps no fp32 copy of its input for the backward pass (PEFT casts
// the input to the adapter's dtype, and autograd would keep that copy, one per adapted layer):
// what its forward leaves allocated beyond its output is less than such a copy
// (kernels/upcast_linear.h). The gradients still reach A, B and the input.
TEST(Lora, ABf16BaseKeepsNoFp32CopyOfItsInput) {
  torch::manual_seed(12);
  model::Linear layer(256, 256);
  layer->to(torch::kBFloat16);
  for (auto& p : layer->parameters()) p.requires_grad_(false);
  layer->attach_lora(8, 2.0, 0.0);
  {
    torch::NoGradGuard no_grad;
    layer->lora_A->weight.normal_();
    layer->lora_B->weight.normal_();
  }
  layer->train();
  const torch::Tensor x = torch::randn({4, 64, 256}).to(torch::kBFloat16).requires_grad_(true);
  torch::Tensor y;
  int64_t held = 0;
  {
    test::CpuBytes bytes;
    y = layer->forward(x);
    held = bytes.live() - static_cast<int64_t>(y.nbytes());
  }
  EXPECT_LT(held, x.numel() * 4) << "bytes kept for backward";
  y.to(torch::kFloat).sum().backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(layer->lora_A->weight.grad().defined());
  EXPECT_TRUE(layer->lora_B->weight.grad().defined());
}

// Every node starts from the same adapters: A from the run's LoRA stream (train.seed alone, no node
// in it), B zero; another seed draws another A.
TEST(Lora, LoraInitIsTheRunsNotTheNodes) {
  train::Config c = train::config_for_model((kBases / "llama-gqa").string(), "", {});
  c.lora.rank = 4;
  auto first_a = [&](int64_t seed) {
    c.train.seed = seed;
    model::CausalLm lm = load_base("llama-gqa");
    family::attach_lora(*lm, c, true);
    auto* q = dynamic_cast<model::AdaptableLinearImpl*>(lm->named_modules()["model.layers.0.self_attn.q_proj"].get());
    EXPECT_TRUE(q->lora_B->weight.eq(0).all().item<bool>());
    return q->lora_A->weight.clone();
  };
  const torch::Tensor a = first_a(3), again = first_a(3), other = first_a(4);
  EXPECT_TRUE(torch::equal(a, again));
  EXPECT_FALSE(torch::equal(a, other));
  // PEFT's Kaiming-uniform bound, 1 / sqrt(in).
  EXPECT_LE(a.abs().max().item<double>(), 1.0 / std::sqrt(32.0));
  EXPECT_GT(a.abs().max().item<double>(), 0.5 / std::sqrt(32.0));
}

// A PEFT adapter of a vision-language model's language model reads under the language model's own
// names, in either of transformers' spellings; one that adapts the vision tower is refused by tensor.
TEST(Lora, VisionLanguageAdaptersReadAsTheirLanguageModels) {
  const std::string dir = test::scratch_dir();
  const torch::Tensor a = torch::randn({2, 32}), b = torch::randn({64, 2});
  auto write = [&](const std::string& name, const std::vector<std::string>& layers) {
    io::NamedTensors tensors;
    for (const auto& layer : layers) {
      tensors.emplace_back("base_model.model." + layer + ".lora_A.weight", a);
      tensors.emplace_back("base_model.model." + layer + ".lora_B.weight", b);
    }
    fs::create_directories(dir + "/" + name);
    io::save_safetensors(dir + "/" + name + "/adapter_model.safetensors", tensors);
    io::write_file_atomic(dir + "/" + name + "/adapter_config.json", R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4,
      "target_modules": ["q_proj"]})");
    return dir + "/" + name;
  };
  for (const char* prefix : {"language_model.model.", "model.language_model."}) {
    const io::LoraAdapter adapter = io::read_lora_adapter(write(prefix, {std::string(prefix) + "layers.1.self_attn.q_proj"}));
    ASSERT_EQ(adapter.tensors.size(), 2u);
    EXPECT_EQ(adapter.tensors[0].first, "model.layers.1.self_attn.q_proj.lora_A.weight") << prefix;
  }
  const std::string vision = write("vision", {"model.language_model.layers.0.self_attn.q_proj",
                                               "model.vision_tower.encoder.layers.0.self_attn.q_proj"});
  EXPECT_NE(test::error_of([&] { io::read_lora_adapter(vision); })
                .find("tensor 'base_model.model.model.vision_tower.encoder.layers.0.self_attn.q_proj.lora_A.weight' adapts a "
                      "module outside the language model"),
            std::string::npos);
}

TEST(Lora, APeftDirectoryIsAModelForEvalAndGenerate) {
  const std::string dir = placed_fixture("llama-gqa");
  train::Config c = train::config_for_model(dir, "", {});  // the base's config.json gives the shape
  model::CausalLm lm = family::make_lm(c.model, 0);
  io::SafetensorsFile ref((kFixtures / "lora" / "llama-gqa" / "logits.safetensors").string());
  EXPECT_LE((logits_of(*lm, ref.load("tokens")) - ref.load("logits")).abs().max().item<double>(), 1e-5);
}

// (gemma3-vision: a vision-language base, whose adapter PEFT names and targets inside its language
// model, and whose dense merge is the vision-language model again. qwen3-moe: a mixture of experts,
// whose "all-linear" is the attention's layers in PEFT and in lofi.)
TEST(Lora, PeftReadsLofisAdaptersAndMergesThemAsLofiDoes) {
  for (const char* base : {"llama-gqa", "gpt2", "gemma3-vision", "qwen3-moe"}) {
    SCOPED_TRACE(base);
    const std::string dir = test::scratch_dir() + "/" + base;
    model::CausalLm lm = load_base(base);
    const io::LoraAdapter adapter =
        random_adapter(*lm, spec_of(4, 8, {"all-linear"}, (kBases / base).string()), 11);
    io::write_peft_adapter(dir + "/adapter", adapter);
    const io::LoraAdapter back = io::read_lora_adapter(dir + "/adapter");
    ASSERT_EQ(back.tensors.size(), adapter.tensors.size());
    for (size_t i = 0; i < back.tensors.size(); ++i) {
      EXPECT_EQ(back.tensors[i].first, adapter.tensors[i].first);
      EXPECT_TRUE(torch::equal(back.tensors[i].second, adapter.tensors[i].second)) << adapter.tensors[i].first;
    }
    torch::Tensor tokens = torch::randint(0, 64, {2, 16}, torch::kLong);
    io::save_safetensors(dir + "/logits.safetensors", {{"tokens", tokens}, {"logits", logits_of(*lm, tokens)}});
    test::CommandResult read = test::run_python("lora/check_with_peft.py",
                                                "logits " + (kBases / base).string() + " " + dir + "/adapter " + dir + "/logits.safetensors");
    std::cout << read.output;
    EXPECT_EQ(read.status, 0) << read.output;
    // The dense merge: the adapter folded into the base, as PEFT's merge_and_unload.
    family::merge_adapter_files({dir + "/adapter"}, dir + "/dense", {"dense", 0, false});
    test::CommandResult dense = test::run_python("lora/check_with_peft.py",
                                                 "dense " + (kBases / base).string() + " " + dir + "/adapter " + dir + "/dense");
    std::cout << dense.output;
    EXPECT_EQ(dense.status, 0) << dense.output;
  }
}

TEST(Lora, AdapterMergesAgainstTheDenseAverageAndPeft) {
  const std::string dir = test::scratch_dir(), base = "llama-gqa", base_dir = (kBases / base).string();
  std::vector<std::string> paths;
  std::vector<io::LoraAdapter> adapters;
  for (uint64_t seed : {1, 2, 3}) {
    model::CausalLm lm = load_base(base);
    adapters.push_back(random_adapter(*lm, spec_of(2, 4, {"q_proj", "v_proj", "down_proj"}, base_dir), seed));
    paths.push_back(dir + "/a" + std::to_string(seed));
    io::write_peft_adapter(paths.back(), adapters.back());
  }
  // The exact average of the dense changes, formed densely here (the merge never does).
  std::map<std::string, torch::Tensor> mean;
  for (const auto& a : adapters)
    for (const auto& [layer, d] : deltas(base, a)) mean[layer] = mean.count(layer) ? mean[layer] + d / 3.0 : d / 3.0;

  merge::AdapterMergeResult concat = merge::merge_adapters(adapters, {});
  EXPECT_EQ(concat.adapter.spec.r, 6);
  EXPECT_LE(max_diff(mean, deltas(base, concat.adapter)), 1e-6);

  merge::AdapterMergeResult full = merge::merge_adapters(adapters, {merge::AdapterMergeMode::svd, 6, false});
  EXPECT_LE(max_diff(mean, deltas(base, full.adapter)), 1e-6);  // svd at full rank is the exact average
  EXPECT_LE(full.error["max"].get<double>(), 1e-6);

  merge::AdapterMergeResult low = merge::merge_adapters(adapters, {merge::AdapterMergeMode::svd, 1, false});
  EXPECT_EQ(low.adapter.spec.r, 1);
  const auto low_deltas = deltas(base, low.adapter);
  for (const auto& [layer, exact] : mean) {  // the error it reports is the error it made
    const double actual = (low_deltas.at(layer) - exact).norm().item<double>() / exact.norm().item<double>();
    EXPECT_NEAR(low.error["layers"][layer].get<double>(), actual, 1e-4) << layer;
    EXPECT_GT(actual, 0.01) << layer;  // rank 1 of a rank-6 change loses something
  }

  merge::AdapterMergeResult factors = merge::merge_adapters(adapters, {merge::AdapterMergeMode::factors, 0, false});
  EXPECT_EQ(factors.adapter.spec.r, 2);
  const auto factor_deltas = deltas(base, factors.adapter);
  for (const auto& [layer, exact] : mean) {
    const double actual = (factor_deltas.at(layer) - exact).norm().item<double>() / exact.norm().item<double>();
    EXPECT_NEAR(factors.error["layers"][layer].get<double>(), actual, 1e-4) << layer;
    EXPECT_GT(actual, 0.01) << layer;  // the per-factor mean is not the average
  }

  // PEFT's own combinations agree: cat with weights 1/N, linear with 1/N^2.
  family::merge_adapter_files(paths, dir + "/concat", {"concat", 0, false});
  family::merge_adapter_files(paths, dir + "/factors", {"factors", 0, false});
  std::string args = "combine " + base_dir + " " + dir + "/concat " + dir + "/factors";
  for (const auto& p : paths) args += " " + p;
  test::CommandResult peft = test::run_python("lora/check_with_peft.py", args);
  std::cout << peft.output;
  EXPECT_EQ(peft.status, 0) << peft.output;
}

TEST(Lora, OtherMergeMethodsRunOnTheAdaptersDenseChanges) {
  const std::string dir = test::scratch_dir(), base_dir = (kBases / "llama-gqa").string();
  std::vector<std::string> paths;
  for (uint64_t seed : {4, 5, 6}) {
    model::CausalLm lm = load_base("llama-gqa");
    paths.push_back(dir + "/a" + std::to_string(seed));
    io::write_peft_adapter(paths.back(), random_adapter(*lm, spec_of(2, 4, {"q_proj", "up_proj"}, base_dir), seed));
  }
  const std::string two = " " + paths[0] + " " + paths[1];
  // Task arithmetic with weights 1/2 and lambda 1 is base + the mean change: the exact average, folded.
  test::CommandResult ta = test::run_lofi("merge --method task-arithmetic --weights 0.5,0.5" + two + " --out " + dir + "/ta");
  ASSERT_EQ(ta.status, 0) << ta.output;
  test::CommandResult dense = test::run_lofi("average" + two + " --adapter-merge dense --out " + dir + "/dense");
  ASSERT_EQ(dense.status, 0) << dense.output;
  EXPECT_LE(test::max_abs_diff(dir + "/ta/model.safetensors", dir + "/dense/model.safetensors"), 1e-6);
  EXPECT_GT(test::max_abs_diff(dir + "/ta/model.safetensors", base_dir + "/model.safetensors"), 1e-3);
  for (const auto& entry : fs::directory_iterator(dir))  // the folded inputs are gone
    EXPECT_EQ(entry.path().filename().string().find(".folded-"), std::string::npos) << entry.path();
  // Model Stock over three adapters runs, against their base by default.
  test::CommandResult stock =
      test::run_lofi("merge --method model-stock" + two + " " + paths[2] + " --out " + dir + "/stock");
  ASSERT_EQ(stock.status, 0) << stock.output;
  EXPECT_NE(stock.output.find("merged 3 adapters' dense changes (model-stock)"), std::string::npos) << stock.output;
}

TEST(Lora, NodeAgreementIsTheMeanCosineOfTheirChanges) {
  const std::string dir = test::scratch_dir();
  torch::manual_seed(3);
  const torch::Tensor w0 = torch::randn({6, 5}), d = torch::randn({6, 5}), e = torch::randn({6, 5});
  const torch::Tensor ortho = e - (e * d).sum() / (d * d).sum() * d;  // orthogonal to d
  io::save_safetensors(dir + "/base.safetensors", {{"w", w0}});
  auto final_with = [&](const std::string& name, const torch::Tensor& change) {
    io::save_safetensors(dir + "/" + name + ".safetensors", {{"w", w0 + change}});
    return dir + "/" + name + ".safetensors";
  };
  const std::string same = final_with("same", d), twice = final_with("twice", 2 * d), opposite = final_with("opposite", -d),
                    across = final_with("across", ortho);
  auto mean = [&](std::vector<std::string> finals) {
    return merge::delta_agreement(finals, dir + "/base.safetensors")["mean"].get<double>();
  };
  EXPECT_NEAR(mean({same, twice}), 1.0, 1e-6);  // direction, not length (the files hold fp32)
  EXPECT_NEAR(mean({same, opposite}), -1.0, 1e-6);
  EXPECT_NEAR(mean({same, across}), 0.0, 1e-6);
  EXPECT_NEAR(mean({same, twice, across}), (1.0 + 0.0 + 0.0) / 3, 1e-6);  // over every pair
  // For adapters through the factors: equal to the cosine of the dense changes.
  std::vector<io::LoraAdapter> adapters;
  std::vector<std::map<std::string, torch::Tensor>> dense;
  for (uint64_t seed : {7, 8}) {
    model::CausalLm lm = load_base("llama-gqa");
    adapters.push_back(random_adapter(*lm, spec_of(2, 4, {"q_proj"}, ""), seed));
    dense.push_back(deltas("llama-gqa", adapters.back()));
  }
  const json agreement = merge::adapter_agreement(adapters);
  for (const auto& [layer, da] : dense[0]) {
    const torch::Tensor db = dense[1].at(layer);
    const double want = ((da * db).sum() / (da.norm() * db.norm())).item<double>();
    EXPECT_NEAR(agreement["tensors"][layer].get<double>(), want, 1e-5) << layer;
  }
}

TEST(Lora, AdapterMergeFlagsAreCheckedByName) {
  const std::string dir = test::scratch_dir(), base_dir = (kBases / "llama-gqa").string();
  std::string two;
  for (uint64_t seed : {1, 2}) {
    model::CausalLm lm = load_base("llama-gqa");
    const std::string path = dir + "/a" + std::to_string(seed);
    io::write_peft_adapter(path, random_adapter(*lm, spec_of(2, 4, {"q_proj"}, base_dir), seed));
    two += " " + path;
  }
  auto refused = [&](const std::string& args, const std::string& says) {
    test::CommandResult r = test::run_lofi(args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.output.find(says), std::string::npos) << args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(dir + "/out")) << args;  // nothing half-written
  };
  refused("average" + two + " --adapter-merge svd --out " + dir + "/out", "svd needs the rank");
  refused("average" + two + " --adapter-merge svd 0 --out " + dir + "/out", "R must be >= 1, found 0");
  refused("average" + two + " --adapter-merge median --out " + dir + "/out", "expected concat, dense, svd R or factors");
  refused("merge --method ties" + two + " --adapter-merge factors --out " + dir + "/out", "merges their dense changes instead");
  refused("average " + (kBases / "llama-gqa").string() + " " + (kBases / "llama-gqa").string() +
              " --adapter-merge factors --out " + dir + "/out",
          "applies to LoRA adapters");
  // svd 1 says what it lost.
  test::CommandResult svd = test::run_lofi("average" + two + " --adapter-merge svd 1 --out " + dir + "/svd1");
  ASSERT_EQ(svd.status, 0) << svd.output;
  EXPECT_NE(svd.output.find("relative error against the exact average"), std::string::npos) << svd.output;
  EXPECT_EQ(io::read_lora_adapter(dir + "/svd1").spec.r, 1);
}

TEST(Lora, MergesRefuseAnAdapterHoldingNaN) {
  model::CausalLm lm = load_base("llama-gqa");
  io::LoraAdapter a = random_adapter(*lm, spec_of(2, 4, {"q_proj"}, ""), 1), b = a;
  b.source = "diverged";
  b.tensors[1].second = b.tensors[1].second.clone();
  b.tensors[1].second[0][1] = std::nan("");
  for (auto mode : {merge::AdapterMergeMode::concat, merge::AdapterMergeMode::svd, merge::AdapterMergeMode::factors}) {
    const std::string why = test::error_of([&] { merge::merge_adapters({a, b}, {mode, 2, false}); });
    EXPECT_NE(why.find("diverged"), std::string::npos) << why;
    EXPECT_NE(why.find(b.tensors[1].first), std::string::npos) << why;
  }
}

TEST(Lora, MergesRefuseAdaptersThatDifferUnlessForced) {
  model::CausalLm lm = load_base("llama-gqa");
  io::LoraAdapter a = random_adapter(*lm, spec_of(2, 4, {"q_proj"}, ""), 1);
  model::CausalLm lm2 = load_base("llama-gqa");
  io::LoraAdapter b = random_adapter(*lm2, spec_of(4, 4, {"q_proj"}, ""), 2);
  b.source = "b";
  const std::string why = test::error_of([&] { merge::merge_adapters({a, b}, {}); });
  EXPECT_NE(why.find("ranks 4 and 2"), std::string::npos) << why;
  EXPECT_NE(why.find("--force"), std::string::npos) << why;
  merge::AdapterMergeOptions forced;
  forced.force = true;
  EXPECT_EQ(merge::merge_adapters({a, b}, forced).adapter.spec.r, 6);
  a.metadata[io::kLoraBaseChecksumKey] = "0000000000000001";
  io::LoraAdapter a2 = a;
  a2.metadata[io::kLoraBaseChecksumKey] = "0000000000000002";
  EXPECT_NE(test::error_of([&] { merge::merge_adapters({a, a2}, {}); }).find("different bases"), std::string::npos);
}

TEST(Lora, BadAdaptersAndSettingsAreRefusedByName) {
  model::CausalLm lm = load_base("llama-gqa");
  std::string why = test::error_of([&] { model::apply_lora(*lm, spec_of(2, 4, {"query"}, ""), 1); });
  EXPECT_NE(why.find("\"query\" matches no linear layer"), std::string::npos) << why;
  EXPECT_NE(why.find("q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"), std::string::npos) << why;
  EXPECT_NE(test::error_of([&] { train::Config c; c.lora.target = "q_proj"; train::validate(c); }).find("lora.rank = 0"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { train::Config c; c.lora.rank = -1; train::validate(c); }).find("lora.rank"), std::string::npos);
  EXPECT_NE(test::error_of([&] { train::Config c; c.lora.rank = 4; c.dist.sync_every = 5; train::validate(c); }).find("sync_every"),
            std::string::npos);
  for (const auto& [key, value, says] : std::vector<std::tuple<std::string, json, std::string>>{
           {"use_dora", true, "DoRA"}, {"peft_type", "LOHA", "LoHa"}, {"rank_pattern", json{{"q_proj", 2}}, "rank_pattern"},
           // LoRA on bare parameters (gpt-oss's experts); an empty list (PEFT's on OLMoE: lora/olmoe) is read as none.
           {"target_parameters", json::array({"mlp.experts.gate_up_proj"}), "target_parameters = [\"mlp.experts.gate_up_proj\"]"}}) {
    const std::string dir = placed_fixture("llama-gqa");
    json config = json::parse(io::read_text_file(dir + "/adapter_config.json"));
    config[key] = value;
    io::write_file_atomic(dir + "/adapter_config.json", config.dump());
    why = test::error_of([&] { io::read_lora_adapter(dir); });
    EXPECT_NE(why.find(says), std::string::npos) << why;
    EXPECT_NE(why.find("adapter_config.json"), std::string::npos) << why;
  }
  // An adapter of another base: the shapes say so, by tensor.
  model::CausalLm gpt2 = load_base("gpt2");
  why = test::error_of([&] { model::load_lora_adapter(*gpt2, io::read_lora_adapter((kFixtures / "lora" / "llama-gqa").string())); });
  EXPECT_NE(why.find("another base"), std::string::npos) << why;
}

// Token ids below the fixtures' vocabulary of 64.
std::string small_vocab_corpus(const std::string& dir, const std::string& name, uint32_t n) {
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < n; ++i) ids.push_back((i * 7 + i / 13 + (i % 5) * 3) % 64);
  const std::string path = dir + "/" + name + ".bin";
  data::write_token_shard(path, ids);
  return path;
}

TEST(DistLora, NodesStoreOnlyTheAdaptersAndMergeExactly) {
  const std::string dir = test::scratch_dir(), data = small_vocab_corpus(dir, "train", 8000),
                    val = small_vocab_corpus(dir, "val", 2000), run_dir = dir + "/run";
  test::CommandResult r = test::run_lofi(
      "launch --workers 2 -- train --set model.init=" + (kBases / "gpt2").string() + " --set data.train=" + data +
      " --set data.val=" + val + " --set data.seq_len=16 --set train.batch_size=8 --set train.steps=6 --set train.lr=1e-2"
      " --set train.warmup_steps=1 --set train.log_every=2 --set train.ckpt_every=3 --set train.threads=1 --set dist.nodes=2"
      " --set dist.timeout_s=60 --set run.dir=" + run_dir + " --set lora.rank=4 --set lora.alpha=8 --set lora.target=c_attn,c_fc"
      " --set model.dtype=bf16");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("the base frozen in bf16"), std::string::npos) << r.output;
  const run::RunDir run(run_dir);
  std::vector<io::LoraAdapter> finals;
  for (int node : {0, 1}) {
    io::LoraAdapter a = io::read_lora_adapter(run.node(node).final_weights());
    EXPECT_EQ(a.tensors.size(), 8u);  // 2 layers x (c_attn, c_fc) x (A, B): nothing of the base
    for (const auto& [name, t] : a.tensors) {
      EXPECT_TRUE(name.find(".lora_A.weight") != std::string::npos || name.find(".lora_B.weight") != std::string::npos) << name;
      EXPECT_EQ(t.scalar_type(), torch::kFloat) << name;  // what trains stays fp32 over a bf16 base
    }
    EXPECT_TRUE(a.spec.fan_in_fan_out);
    EXPECT_FALSE(a.metadata.at(io::kLoraBaseChecksumKey).empty());
    // The checkpoint too: the adapters, and optimizer state for them alone.
    const auto ckpt = run.node(node).latest_checkpoint();
    ASSERT_TRUE(ckpt.has_value());
    EXPECT_EQ(io::SafetensorsFile(ckpt->weights).entries().size(), 8u);
    const io::SafetensorsFile optimizer(ckpt->optimizer);  // named: a temporary's entries() would dangle in the loop
    for (const auto& e : optimizer.entries()) EXPECT_NE(e.name.find("lora_"), std::string::npos) << e.name;
    finals.push_back(std::move(a));
  }
  // The nodes trained apart (that they started from one A is LoraInitIsTheRunsNotTheNodes').
  EXPECT_FALSE(torch::equal(finals[0].tensors[0].second, finals[1].tensors[0].second));
  // The job's merge is the exact one: rank 2 r, equal to merging the finals here.
  const io::LoraAdapter merged = io::read_lora_adapter(run.merged());
  EXPECT_EQ(merged.spec.r, 8);
  const io::LoraAdapter again = merge::merge_adapters(finals, {}).adapter;
  for (size_t i = 0; i < merged.tensors.size(); ++i)
    EXPECT_TRUE(torch::equal(merged.tensors[i].second, again.tensors[i].second)) << merged.tensors[i].first;
  EXPECT_TRUE(fs::exists(run.merged_hf() + "/adapter_config.json"));
  EXPECT_TRUE(fs::exists(run.averaging_check()));
  const json check = json::parse(io::read_text_file(run.averaging_check()));
  ASSERT_TRUE(check.contains("agreement")) << check.dump();
  EXPECT_EQ(check["agreement"]["tensors"].size(), 4u);  // one cosine per adapted layer
  EXPECT_NE(r.output.find("nodes' changes agree: mean cosine"), std::string::npos) << r.output;
  // lofi eval reads the merged adapter on its base.
  test::CommandResult ev = test::run_lofi("eval --model " + run.merged() + " --data val=" + val + " --max-windows 4");
  EXPECT_EQ(ev.status, 0) << ev.output;
}

// ViT nodes with adapters on qkv and fc1 and a new head trained whole (modules_to_save), merged
// exactly, and scored as a classifier through the adapter file.
TEST(DistLora, VitNodesWithANewHeadMergeAndEvaluate) {
  const std::string dir = test::scratch_dir(), run_dir = dir + "/run";
  demo::SyntheticImageConfig c;
  c.pretrain_train_per_class = 1, c.pretrain_val_per_class = 1, c.finetune_train_per_class = 4, c.eval_per_class = 2, c.threads = 2;
  demo::write_synthetic_images(c, dir + "/images");
  test::CommandResult r = test::run_lofi(
      "launch --workers 2 -- train --set model.arch=vit --set model.preset=vit_test_patch8_32 --set model.init=" +
      (kFixtures / "vit" / "timm_deit" / "model.safetensors").string() + " --set data.train=" + dir + "/images/finetune-train" +
      " --set data.val=" + dir + "/images/finetune-val --set run.dir=" + run_dir +
      " --set train.steps=4 --set train.batch_size=8 --set train.warmup_steps=1 --set train.eval_batches=2"
      " --set images.loader_threads=1 --set dist.nodes=2 --set dist.timeout_s=60"
      " --set lora.rank=4 --set lora.target=qkv,fc1 --set lora.modules_to_save=head");
  ASSERT_EQ(r.status, 0) << r.output;
  const run::RunDir run(run_dir);
  const io::LoraAdapter node = io::read_lora_adapter(run.node(0).final_weights());
  std::set<std::string> names;
  for (const auto& [name, t] : node.tensors) names.insert(name);
  EXPECT_EQ(names.size(), 2u * 2 * 2 + 2);  // 2 blocks x (qkv, fc1) x (A, B), and the head's weight and bias
  EXPECT_TRUE(names.count("head.weight") && names.count("head.bias"));
  const io::LoraAdapter merged = io::read_lora_adapter(run.merged());
  EXPECT_EQ(merged.spec.r, 8);
  // The head is averaged as it is: the mean of the nodes' heads.
  const io::LoraAdapter other = io::read_lora_adapter(run.node(1).final_weights());
  std::map<std::string, torch::Tensor> a(node.tensors.begin(), node.tensors.end()), b(other.tensors.begin(), other.tensors.end()),
      m(merged.tensors.begin(), merged.tensors.end());
  EXPECT_TRUE(torch::allclose(m.at("head.weight"), (a.at("head.weight") + b.at("head.weight")) / 2, 1e-6, 1e-7));
  test::CommandResult ev = test::run_lofi("eval --model " + run.merged() + " --data val=" + dir + "/images/finetune-val");
  ASSERT_EQ(ev.status, 0) << ev.output;
  EXPECT_NE(ev.output.find("top-1"), std::string::npos) << ev.output;  // scored as a classifier
  // Folded into the base (dense): one timm-named file that classifies as the adapter does.
  test::CommandResult dense = test::run_lofi("average " + run_dir + " --adapter-merge dense --out " + dir + "/dense.safetensors");
  ASSERT_EQ(dense.status, 0) << dense.output;
  auto classifier = [&](const std::string& path) {
    train::Config saved = train::config_from_checkpoint(path);
    model::Vit vit = family::make_vit(saved.model, 10, 0);
    vit->eval();
    return vit;
  };
  model::Vit adapted = classifier(run.merged()), folded = classifier(dir + "/dense.safetensors");
  EXPECT_EQ(folded->named_parameters().find("blocks.0.attn.qkv.lora_A.weight"), nullptr);  // no adapter left
  EXPECT_NE(adapted->named_parameters().find("blocks.0.attn.qkv.lora_A.weight"), nullptr);
  torch::NoGradGuard no_grad;
  const torch::Tensor images = torch::randn({3, 3, 32, 32});
  EXPECT_LE((adapted->forward(images) - folded->forward(images)).abs().max().item<double>(), 1e-5);
}

TEST(DistLora, APeftAdapterTrainsFurther) {
  const std::string dir = test::scratch_dir(), adapter = placed_fixture("llama-gqa"),
                    data = small_vocab_corpus(dir, "train", 4000), run_dir = dir + "/run";
  const std::string flags = " --set model.init=" + adapter + " --set data.train=" + data +
                            " --set data.seq_len=16 --set train.batch_size=4 --set train.steps=3 --set train.lr=1e-2"
                            " --set train.warmup_steps=1 --set train.threads=1 --set run.dir=" + run_dir;
  test::CommandResult wrong = test::run_lofi("train" + flags + " --set lora.rank=4");
  EXPECT_NE(wrong.status, 0);
  EXPECT_NE(wrong.output.find("rank 8, and lora.rank = 4"), std::string::npos) << wrong.output;
  test::CommandResult r = test::run_lofi("train" + flags + " --set lora.rank=8");
  ASSERT_EQ(r.status, 0) << r.output;
  const io::LoraAdapter start = io::read_lora_adapter(adapter);
  const io::LoraAdapter trained = io::read_lora_adapter(run::RunDir(run_dir).node(0).final_weights());
  EXPECT_EQ(trained.spec.r, 8);
  EXPECT_EQ(trained.spec.target_modules, start.spec.target_modules);
  ASSERT_EQ(trained.tensors.size(), start.tensors.size());
  std::map<std::string, torch::Tensor> before(start.tensors.begin(), start.tensors.end());
  double moved = 0;
  for (const auto& [name, t] : trained.tensors) moved = std::max(moved, (t - before.at(name)).abs().max().item<double>());
  EXPECT_GT(moved, 1e-4);  // it trained from the adapter's values, not from a fresh start
  EXPECT_LT(moved, 1.0);
  EXPECT_TRUE(fs::exists(run::RunDir(run_dir).node(0).final_hf() + "/adapter_config.json"));
}

}  // namespace
}  // namespace lofi
