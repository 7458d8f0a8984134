// Image classifiers end to end through the CLI, as users run them: lo-fi nodes of a ViT trained
// on a generated ImageFolder by real worker processes, merged, evaluated per test folder (with a
// class map), and resumed from a checkpoint to the same weights as an uninterrupted run.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lofi/demo/synthetic_images.h"
#include "lofi/dist/device.h"
#include "lofi/family/image_evaluator.h"
#include "lofi/family/image_task.h"
#include "lofi/train/trainer.h"
#include "test_util.h"

namespace lofi {
namespace {

using test::run_lofi;

// A small generated image tree (10 fine-tuning classes) in DIR/images.
std::string write_images(const std::string& dir) {
  demo::SyntheticImageConfig c;
  c.pretrain_train_per_class = 1;
  c.pretrain_val_per_class = 1;
  c.finetune_train_per_class = 4;
  c.eval_per_class = 2;
  c.threads = 2;
  demo::write_synthetic_images(c, dir + "/images");
  return dir + "/images";
}

std::string vit_flags(const std::string& images, const std::string& run) {
  return "--set model.arch=vit --set model.preset=vit_test_patch8_32 --set data.train=" + images +
         "/finetune-train --set data.val=" + images + "/finetune-val --set run.dir=" + run +
         " --set train.steps=6 --set train.batch_size=8 --set train.log_every=1 --set train.eval_every=3"
         " --set train.eval_batches=2 --set train.warmup_steps=1 --set images.loader_threads=2 --quiet";
}

// train.cuda_graphs on a ViT (with ENV, on DEVICE) against the same run without: stochastic depth
// drawn from the seed set before each step's pieces, mixed batches staged into the task's tensors.
void expect_graphed_equals_plain(const std::string& device, const std::string& env, double tolerance) {
  const std::string dir = test::scratch_dir(), images = write_images(dir);
  const std::string flags = " --set train.device=" + device + " --set model.drop_path=0.1 --set train.grad_accum=2";
  auto plain = run_lofi("train " + vit_flags(images, dir + "/plain") + flags);
  ASSERT_EQ(plain.status, 0) << plain.output;
  auto graphed = run_lofi("train " + vit_flags(images, dir + "/graphed") + flags + " --set train.cuda_graphs=true", env);
  ASSERT_EQ(graphed.status, 0) << graphed.output;
  EXPECT_LE(test::max_abs_diff(dir + "/plain/node-00/final.safetensors", dir + "/graphed/node-00/final.safetensors"), tolerance);
  const double a = test::last_metrics(dir + "/plain/node-00")["loss"].get<double>();
  EXPECT_NEAR(a, test::last_metrics(dir + "/graphed/node-00")["loss"].get<double>(), tolerance * std::abs(a));
}

TEST(CudaVision, StepsReplayedFromCudaGraphsEqualEagerSteps) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_graphed_equals_plain("cuda", "", 1e-5);
}

// The same with nothing recorded (LOFI_CUDA_GRAPHS_EAGER), on this CPU.
TEST(DistVision, StepStagedForCudaGraphsEqualsThePlainStep) { expect_graphed_equals_plain("cpu", "LOFI_CUDA_GRAPHS_EAGER=1", 1e-6); }

// A micro-batch staged for a replay (copied into tensors kept at one address) has the loss of the
// same micro-batch read in place.
TEST(DistVision, StagedMicroBatchHasTheLossOfTheOneReadInPlace) {
  const std::string dir = test::scratch_dir(), images = write_images(dir);
  train::Config config;
  train::apply_toml_text(config, "[model]\narch = \"vit\"\npreset = \"vit_test_patch8_32\"\n[data]\ntrain = \"" + images +
                                     "/finetune-train\"\n[train]\nbatch_size = 8\n[images]\nloader_threads = 1\n", "test");
  family::ImageTask task(config, dist::Topology{}, 1);
  task.model().eval();  // no stochastic depth: the two forwards must see the same network
  EXPECT_EQ(task.graph_refusal(), "");
  for (int64_t step = 0; step < 2; ++step) {
    task.begin_step(step, 8);
    for (int64_t first : {0, 4}) {
      torch::NoGradGuard no_grad;
      const torch::Tensor in_place = task.loss(first, 4);
      task.stage(first, 4);
      EXPECT_TRUE(torch::allclose(task.staged_loss(), in_place, 0, 0)) << "step " << step << " first " << first;
    }
  }
}

// dist.shard = "full" on a ViT: its blocks gathered one at a time (with the periodic evaluation's
// forward passes on every worker of the node), trained to the unsharded node's weights.
TEST(DistVision, FullyShardedNodeTrainsLikeTheUnshardedNode) {
  const std::string dir = test::scratch_dir(), images = write_images(dir);
  auto whole = run_lofi("launch --workers 2 -- train " + vit_flags(images, dir + "/none"));
  ASSERT_EQ(whole.status, 0) << whole.output;
  auto full = run_lofi("launch --workers 2 -- train " + vit_flags(images, dir + "/full") + " --set dist.shard=full");
  ASSERT_EQ(full.status, 0) << full.output;
  EXPECT_LE(test::max_abs_diff(dir + "/none/node-00/final.safetensors", dir + "/full/node-00/final.safetensors"), 1e-6);
  const auto a = test::last_metrics(dir + "/none/node-00"), b = test::last_metrics(dir + "/full/node-00");
  EXPECT_NEAR(a["val_loss"].get<double>(), b["val_loss"].get<double>(), 1e-5);
  EXPECT_LT(b["parameter_bytes"].get<int64_t>(), a["parameter_bytes"].get<int64_t>());
  // With bf16 weights (fp32 masters): near the fp32 run, AdamW's 6 steps apart at most, and the
  // final in fp32.
  auto bf16 = run_lofi("launch --workers 2 -- train " + vit_flags(images, dir + "/bf16") +
                       " --set dist.shard=full --set train.precision=bf16 --set train.param_dtype=bf16");
  ASSERT_EQ(bf16.status, 0) << bf16.output;
  const double diff = test::max_abs_diff(dir + "/none/node-00/final.safetensors", dir + "/bf16/node-00/final.safetensors");
  EXPECT_GT(diff, 0.0);
  EXPECT_LT(diff, 12 * train::Config{}.train.lr);
  EXPECT_NEAR(test::last_metrics(dir + "/bf16/node-00")["val_loss"].get<double>(), a["val_loss"].get<double>(), 0.05 * a["val_loss"].get<double>());
  // From a pretrained ViT whose head has other classes (16 against 10): built in pieces, the
  // blocks are read from the file as they are filled and the new head is drawn as an ordinary
  // build draws it, so the node trains to the unsharded node's weights.
  auto pre = run_lofi("train --set model.arch=vit --set model.preset=vit_test_patch8_32 --set data.train=" + images +
                      "/pretrain-train --set run.dir=" + dir + "/pre --set train.steps=2 --set train.batch_size=8 --quiet");
  ASSERT_EQ(pre.status, 0) << pre.output;
  const std::string init = " --set model.init=" + dir + "/pre/node-00/final.safetensors";
  auto whole_init = run_lofi("launch --workers 2 -- train " + vit_flags(images, dir + "/none-init") + init);
  ASSERT_EQ(whole_init.status, 0) << whole_init.output;
  auto full_init = run_lofi("launch --workers 2 -- train " + vit_flags(images, dir + "/full-init") + init + " --set dist.shard=full");
  ASSERT_EQ(full_init.status, 0) << full_init.output;
  EXPECT_LE(test::max_abs_diff(dir + "/none-init/node-00/final.safetensors", dir + "/full-init/node-00/final.safetensors"), 1e-6);
}

// LP-FT: the linear probe fits the new head alone, and every node fits the same one, so lo-fi's
// nodes still start fine-tuning from one point.
TEST(DistVision, LinearProbeFitsTheSameNewHeadOnEveryNode) {
  const std::string dir = test::scratch_dir(), images = write_images(dir);
  // A pretrained ViT with the source task's 16 classes; the target task has 10.
  auto pre = run_lofi("train --set model.arch=vit --set model.preset=vit_test_patch8_32 --set data.train=" + images +
                      "/pretrain-train --set run.dir=" + dir + "/pre --set train.steps=2 --set train.batch_size=8 --quiet");
  ASSERT_EQ(pre.status, 0) << pre.output;
  train::Config c;
  c.model.arch = "vit", c.model.preset = "vit_test_patch8_32", c.model.init = dir + "/pre/node-00/final.safetensors";
  c.data.train = images + "/finetune-train";
  c.images.loader_threads = 1;
  c.train.head_init = "lp";
  auto weights = [](train::Task& t) {
    std::map<std::string, torch::Tensor> w;
    for (const auto& p : t.model().named_parameters()) w[p.key()] = p.value().detach().clone();
    return w;
  };
  dist::Topology node0, node1;
  node0.nodes = node1.nodes = 2, node1.node = 1;
  family::ImageTask a(c, node0, 11), b(c, node1, 11);
  const auto before = weights(a);
  const std::string said = a.probe_head(5, 1e-2, 8);
  b.probe_head(5, 1e-2, 8);
  EXPECT_NE(said.find("5 steps of the new head"), std::string::npos) << said;
  const auto after_a = weights(a), after_b = weights(b);
  for (const auto& [name, w] : before) {
    EXPECT_TRUE(torch::equal(after_a.at(name), after_b.at(name))) << name << " differs between nodes";
    if (name.rfind("head.", 0) == 0)
      EXPECT_FALSE(torch::equal(after_a.at(name), w)) << name << " was not fitted";
    else
      EXPECT_TRUE(torch::equal(after_a.at(name), w)) << name << " moved: the backbone must stay frozen";
  }
  for (const auto& p : a.model().parameters()) EXPECT_TRUE(p.requires_grad());  // unfrozen for fine-tuning

  // A head that came with the checkpoint, or no pretrained model at all, is refused by name.
  train::Config same = c;
  same.data.train = images + "/pretrain-train";  // the checkpoint's own 16 classes
  family::ImageTask kept(same, node0, 11);
  const std::string kept_error = test::error_of([&] { kept.probe_head(1, 1e-2, 8); });
  EXPECT_NE(kept_error.find("has a head for these 16 classes"), std::string::npos) << kept_error;
  train::Config scratch = c;
  scratch.model.init.clear();
  family::ImageTask random(scratch, node0, 11);
  EXPECT_NE(test::error_of([&] { random.probe_head(1, 1e-2, 8); }).find("model.init is empty"), std::string::npos);
  // Through the CLI: two lo-fi nodes probe, then fine-tune.
  auto lp = run_lofi("launch --workers 2 -- train " + vit_flags(images, dir + "/lp") + " --set dist.nodes=2 --set model.init=" +
                     c.model.init + " --set train.head_init=lp --set train.lp_steps=3 --set train.steps=2");
  ASSERT_EQ(lp.status, 0) << lp.output;
  EXPECT_NE(lp.output.find("linear probe (train.head_init = \"lp\"): 3 steps"), std::string::npos) << lp.output;
  train::Config lm;
  lm.train.head_init = "lp";
  EXPECT_NE(test::error_of([&] { train::validate(lm); }).find("model.arch = \"opt\" has none"), std::string::npos);
}

TEST(DistVision, LofiNodesTrainMergeAndEvaluate) {
  const std::string dir = test::scratch_dir(), images = write_images(dir), run = dir + "/lofi";
  auto r = run_lofi("launch --workers 2 -- train " + vit_flags(images, run) + " --set dist.nodes=2");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* node : {"/node-00", "/node-01"}) {
    auto m = test::last_metrics(run + node);
    EXPECT_EQ(m["step"], 6);
    EXPECT_EQ(m["images"], 6 * 4);  // batch 8 over 2 nodes
    EXPECT_EQ(m["bytes_between_nodes"], 0);
  }
  EXPECT_GT(test::max_abs_diff(run + "/node-00/final.safetensors", run + "/node-01/final.safetensors"), 1e-4);
  const std::string merged = run + "/merged.safetensors";
  ASSERT_TRUE(std::filesystem::exists(merged));
  auto classes = family::checkpoint_classes(merged);  // carried through the merge
  ASSERT_EQ(classes.size(), 10u);

  // Sets decoded once and kept score as sets streamed through the loader each time, and
  // max_images cuts both at the same image.
  {
    family::ImageEvalSettings cached, streamed;
    cached.batch = streamed.batch = 8;
    cached.max_images = streamed.max_images = 13;
    streamed.cache_bytes = 0;
    const std::vector<family::ImageTestSet> sets{{"in", images + "/finetune-val", ""}};
    const train::Config config = train::config_from_checkpoint(merged);
    auto a = family::ImageEvaluator(config, classes, sets, cached).score_file(merged);
    auto b = family::ImageEvaluator(config, classes, sets, streamed).score_file(merged);
    EXPECT_EQ(a[0].count, 13);
    EXPECT_EQ(b[0].count, 13);
    EXPECT_EQ(a[0].top1, b[0].top1);
    EXPECT_DOUBLE_EQ(a[0].loss, b[0].loss);
  }

  // The validation logged at the last step is the node's final model scored on eval_batches x
  // micro-batch (2 x 4) validation images, an even share of the classes: the same numbers lofi
  // eval --max-images 8 gives.
  for (const char* node : {"/node-00", "/node-01"}) {
    auto m = test::last_metrics(run + node);
    const std::string path = run + node + "/final.safetensors";
    family::ImageEvalSettings first8;
    first8.batch = 4;
    first8.max_images = 8;
    const std::vector<family::ImageTestSet> val{{"val", images + "/finetune-val", ""}};
    auto s = family::ImageEvaluator(train::config_from_checkpoint(path), classes, val, first8).score_file(path);
    EXPECT_EQ(s[0].count, 8);
    EXPECT_NEAR(m["val_top1"].get<double>(), s[0].top1, 1e-9) << node;
    EXPECT_NEAR(m["val_loss"].get<double>(), s[0].loss, 1e-5) << node;
  }

  // Top-1 per folder; a sketch set of 3 of the 10 classes (as ImageNet-R holds 200 of 1000), seen
  // through a subset class map.
  const std::string subset = dir + "/sketch-subset";
  std::filesystem::create_directories(subset);
  for (size_t c : {0, 3, 7})
    std::filesystem::copy(images + "/shift-sketch/" + classes[c], subset + "/" + classes[c],
                          std::filesystem::copy_options::recursive);
  const std::string map = dir + "/subset.txt";
  std::ofstream(map) << "# three of the ten\n" << classes[0] << " " << classes[0] << "\n" << classes[3] << " 3\n"
                     << classes[7] << " " << classes[7] << "\n";
  const std::string json = dir + "/eval.json";
  auto e = run_lofi("eval --model " + merged + " --data in=" + images + "/finetune-val --data sketch=" + subset +
                    " --class-map sketch=" + map + " --json " + json);
  ASSERT_EQ(e.status, 0) << e.output;
  auto results = nlohmann::json::parse(std::ifstream(json))["results"][0]["datasets"];
  EXPECT_EQ(results["in"]["images"], 20);
  EXPECT_EQ(results["sketch"]["images"], 6);
  for (const char* set : {"in", "sketch"}) {
    EXPECT_GE(results[set]["top5"].get<double>(), results[set]["top1"].get<double>());
    EXPECT_GT(results[set]["loss"].get<double>(), 0.0);
  }
  EXPECT_DOUBLE_EQ(results["sketch"]["top5"].get<double>(), 1.0);  // 3 classes: always among the top 5
  auto bad = run_lofi("eval --model " + merged + " --data in=" + images + "/finetune-val --class-map nope=" + map);
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("no --data set is named nope"), std::string::npos) << bad.output;
}

TEST(DistVision, ResumedRunEqualsUninterrupted) {
  const std::string dir = test::scratch_dir(), images = write_images(dir);
  const std::string flags = " --set train.ckpt_every=3 --set images.mixup=0.8 --set model.drop_path=0.1";
  auto full = run_lofi("train " + vit_flags(images, dir + "/full") + flags);
  ASSERT_EQ(full.status, 0) << full.output;
  auto part = run_lofi("train " + vit_flags(images, dir + "/part") + flags);
  ASSERT_EQ(part.status, 0) << part.output;
  // An interrupted run: only the step-3 checkpoint survived.
  std::filesystem::remove(dir + "/part/node-00/final.safetensors");
  std::filesystem::remove(dir + "/part/node-00/ckpt/step-000006.safetensors");
  std::filesystem::remove(dir + "/part/node-00/ckpt/step-000006.optim.safetensors");
  auto resumed = run_lofi("train " + vit_flags(images, dir + "/part") + flags + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(test::max_abs_diff(dir + "/full/node-00/final.safetensors", dir + "/part/node-00/final.safetensors"), 0.0);
  EXPECT_EQ(test::last_metrics(dir + "/part/node-00")["step"], 6);
}

TEST(DistVision, UnreadableImagesAreSkippedOrFatal) {
  const std::string dir = test::scratch_dir(), images = write_images(dir);
  const std::string bad = images + "/finetune-train/" + demo::synthetic_image_classes("finetune-train")[0] + "/00000.png";
  std::ofstream(bad, std::ios::trunc) << "not a png";
  auto skipped = run_lofi("train " + vit_flags(images, dir + "/skip"));
  ASSERT_EQ(skipped.status, 0) << skipped.output;
  auto fatal = run_lofi("train " + vit_flags(images, dir + "/fail") + " --set images.on_bad_image=fail");
  EXPECT_NE(fatal.status, 0);
  EXPECT_NE(fatal.output.find(bad), std::string::npos) << fatal.output;
}

// What a classifier cannot learn from, and [images] values out of range, are refused by folder
// and key before the run starts.
TEST(DistVision, OneClassAnEmptyClassAndBadImagesKeysAreRefused) {
  const std::string dir = test::scratch_dir(), images = write_images(dir);
  const std::string train = images + "/finetune-train", first = demo::synthetic_image_classes("finetune-train")[0];
  std::filesystem::create_directories(dir + "/one");
  std::filesystem::copy(train + "/" + first, dir + "/one/" + first);
  auto one = run_lofi("train " + vit_flags(images, dir + "/r1") + " --set data.train=" + dir + "/one --set train.eval_every=0");
  EXPECT_NE(one.status, 0);
  EXPECT_NE(one.output.find("one class directory (" + first + ")"), std::string::npos) << one.output;
  std::filesystem::create_directories(train + "/zzz-empty");
  auto empty = run_lofi("train " + vit_flags(images, dir + "/r2"));
  EXPECT_NE(empty.status, 0);
  EXPECT_NE(empty.output.find("class directory \"zzz-empty\" holds no"), std::string::npos) << empty.output;
  std::filesystem::remove(train + "/zzz-empty");
  for (const auto& [set, key] : {std::pair{"images.scale_min=0", "images.scale_min must be > 0"},
                                 std::pair{"images.hflip=5", "images.hflip must be <= 1"},
                                 std::pair{"images.interpolation=nearest", "images.interpolation must be"}}) {
    auto bad = run_lofi("train " + vit_flags(images, dir + "/r3") + " --set " + set);
    EXPECT_NE(bad.status, 0);
    EXPECT_NE(bad.output.find(key), std::string::npos) << bad.output;
    EXPECT_FALSE(std::filesystem::exists(dir + "/r3")) << set << ": the run directory was made";
  }
}

}  // namespace
}  // namespace lofi
