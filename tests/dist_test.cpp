// Multi-process tests: real worker processes rendezvous over loopback through `lofi launch`
// (torchrun's contract) or as separate jobs, and the files they write are compared.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "lofi/dist/store.h"
#include "lofi/io/safetensors.h"
#include "test_util.h"

namespace lofi {
namespace {

using test::last_metrics;
using test::max_abs_diff;
using test::run_lofi;

std::string train_cmd(const std::string& data, const std::string& run, const std::string& extra = "") {
  return "train " + test::tiny_train_flags(data, run) + " " + extra;
}

TEST(Dist, TwoWorkerBaselineEqualsOneWorker) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto one = run_lofi("launch --workers 1 -- " + train_cmd(data, dir + "/one"));
  ASSERT_EQ(one.status, 0) << one.output;
  auto two = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/two"));
  ASSERT_EQ(two.status, 0) << two.output;
  EXPECT_LE(max_abs_diff(dir + "/one/node-00/final.safetensors", dir + "/two/node-00/final.safetensors"), 1e-5);
  // Bytes as counted: each of the 6 steps all-reduces every fp32 gradient once, and the loss with
  // the stop flag (a signal's stop request, trainer.cpp) once; a ring all-reduce of n bytes
  // between 2 workers sends n from each.
  int64_t params = 0;
  const io::SafetensorsFile two_final(dir + "/two/node-00/final.safetensors");
  for (const auto& e : two_final.entries()) params += static_cast<int64_t>((e.end - e.begin) / 4);
  EXPECT_EQ(last_metrics(dir + "/two/node-00")["bytes_within_node"].get<int64_t>(), 6 * (4 * params + 4 + 4));
  EXPECT_NE(two.output.find("[rank 0] node 0 step 6/6"), std::string::npos) << two.output;  // prefixed by launch
  // The same with the all-reduce after backward instead of overlapped buckets, and with two
  // micro-batches per step (only the last backward synchronises).
  auto flat = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/flat", "--set dist.overlap=false"));
  ASSERT_EQ(flat.status, 0) << flat.output;
  EXPECT_LE(max_abs_diff(dir + "/one/node-00/final.safetensors", dir + "/flat/node-00/final.safetensors"), 1e-5);
  auto accum = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/accum", "--set train.grad_accum=2 --set dist.bucket_mb=0.01"));
  ASSERT_EQ(accum.status, 0) << accum.output;
  EXPECT_LE(max_abs_diff(dir + "/one/node-00/final.safetensors", dir + "/accum/node-00/final.safetensors"), 1e-5);
  EXPECT_EQ(last_metrics(dir + "/accum/node-00")["bytes_within_node"], last_metrics(dir + "/two/node-00")["bytes_within_node"]);
}

TEST(Dist, GradientAccumulationEqualsTheFullBatch) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto full = run_lofi(train_cmd(data, dir + "/full"));
  ASSERT_EQ(full.status, 0) << full.output;
  auto accum = run_lofi(train_cmd(data, dir + "/accum", "--set train.grad_accum=4"));
  ASSERT_EQ(accum.status, 0) << accum.output;
  EXPECT_LE(max_abs_diff(dir + "/full/node-00/final.safetensors", dir + "/accum/node-00/final.safetensors"), 1e-5);
}

TEST(Dist, LofiNodesNeverTalkAndDiffer) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  // 4 workers as 2 nodes of 2: gradients are all-reduced inside each node, nothing between.
  auto r = run_lofi("launch --workers 4 -- " + train_cmd(data, dir + "/run", "--set dist.nodes=2"));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* node : {"node-00", "node-01"}) {
    auto m = last_metrics(dir + "/run/" + node);
    EXPECT_EQ(m["bytes_between_nodes"].get<int64_t>(), 0) << node;
    EXPECT_GT(m["bytes_within_node"].get<int64_t>(), 0) << node;
  }
  std::string a = dir + "/run/node-00/final.safetensors", b = dir + "/run/node-01/final.safetensors";
  EXPECT_GT(max_abs_diff(a, b), 1e-4);  // each node followed its own data order
  // merged.safetensors is the uniform average of the two node finals.
  io::SafetensorsFile fa(a), fb(b), merged(dir + "/run/merged.safetensors");
  for (const auto& e : fa.entries())
    EXPECT_TRUE(torch::allclose(merged.load(e.name), (fa.load(e) + fb.load(e.name)) / 2, 1e-6, 1e-7)) << e.name;
  EXPECT_TRUE(std::filesystem::exists(dir + "/run/config.toml"));
}

TEST(Dist, NodeIdJobsReproduceTheWholeJob) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  // Dropout on: its random stream must depend on the node, not on the job's rank numbering.
  auto whole = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/whole", "--set dist.nodes=2 --set model.dropout=0.1"));
  ASSERT_EQ(whole.status, 0) << whole.output;
  for (int k = 0; k < 2; ++k) {
    auto alone = run_lofi(train_cmd(data, dir + "/split",
                                    "--set dist.nodes=2 --set model.dropout=0.1 --set dist.node_id=" + std::to_string(k)));
    ASSERT_EQ(alone.status, 0) << alone.output;
    std::string node = "/node-0" + std::to_string(k) + "/final.safetensors";
    EXPECT_EQ(max_abs_diff(dir + "/whole" + node, dir + "/split" + node), 0.0) << node;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/split/merged.safetensors"));  // separate jobs merge with `lofi average`
}

// An uninterrupted 6-step run against one whose only surviving checkpoint is step 3, resumed with
// RESUME_FLAGS (FLAGS for both; e.g. a precision, or another device for the resumed half).
void expect_resume_equals_uninterrupted(const std::string& flags, const std::string& resume_flags, double tolerance) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto full = run_lofi(train_cmd(data, dir + "/full", "--set train.ckpt_every=3 " + flags));
  ASSERT_EQ(full.status, 0) << full.output;
  auto part = run_lofi(train_cmd(data, dir + "/part", "--set train.ckpt_every=3 " + flags));
  ASSERT_EQ(part.status, 0) << part.output;
  std::filesystem::remove(dir + "/part/node-00/final.safetensors");
  std::filesystem::remove(dir + "/part/node-00/ckpt/step-000006.safetensors");
  std::filesystem::remove(dir + "/part/node-00/ckpt/step-000006.optim.safetensors");
  auto resumed = run_lofi(train_cmd(data, dir + "/part", "--set train.ckpt_every=3 --resume " + flags + " " + resume_flags));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(resumed.output.find("step 2/6"), std::string::npos) << "restarted from scratch: " << resumed.output;
  EXPECT_NE(resumed.output.find("step 4/6"), std::string::npos) << resumed.output;
  EXPECT_LE(max_abs_diff(dir + "/full/node-00/final.safetensors", dir + "/part/node-00/final.safetensors"), tolerance);
  EXPECT_EQ(last_metrics(dir + "/part/node-00")["step"], 6);
  // Checkpoints stay fp32 whatever the compute precision.
  io::SafetensorsFile final_weights(dir + "/part/node-00/final.safetensors");
  for (const auto& e : final_weights.entries()) EXPECT_EQ(e.dtype, "F32") << e.name;
}

TEST(Dist, ResumedRunEqualsUninterrupted) { expect_resume_equals_uninterrupted("", "", 0.0); }

// A LoRA run's checkpoints hold only the adapters and their optimizer state: the base is rebuilt
// (here from the seed, held in bf16) and the resumed run ends where the uninterrupted one does.
TEST(Dist, ResumedLoraRunEqualsUninterrupted) {
  expect_resume_equals_uninterrupted("--set lora.rank=4 --set lora.alpha=8 --set model.dtype=bf16", "", 0.0);
}

// bf16 autocast (on CPU here): fp32 master weights and optimizer state resume exactly too, and it
// trains like fp32 (the same loss to within bf16's rounding).
TEST(Dist, ResumedBf16RunEqualsUninterrupted) {
  expect_resume_equals_uninterrupted("--set train.precision=bf16", "", 0.0);
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto fp32 = run_lofi(train_cmd(data, dir + "/fp32"));
  auto bf16 = run_lofi(train_cmd(data, dir + "/bf16", "--set train.precision=bf16"));
  ASSERT_EQ(fp32.status, 0) << fp32.output;
  ASSERT_EQ(bf16.status, 0) << bf16.output;
  const double a = last_metrics(dir + "/fp32/node-00")["loss"], b = last_metrics(dir + "/bf16/node-00")["loss"];
  EXPECT_NEAR(a, b, 0.02 * a);
  EXPECT_NE(a, b);  // bf16 did change the arithmetic
}

// On a GPU machine (skipped without one): a run checkpointed on the GPU resumes on the CPU and
// the reverse, landing where the uninterrupted run does (to float rounding: the devices' kernels
// differ); and a bf16 run on the GPU resumes exactly.
bool has_gpu() { return test::run_lofi("--version").output.find("available yes") != std::string::npos; }

TEST(CudaDist, CheckpointsMoveBetweenDevices) {
  if (!has_gpu()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_resume_equals_uninterrupted("--set train.device=cuda", "--set train.device=cpu", 1e-4);
  expect_resume_equals_uninterrupted("--set train.device=cpu", "--set train.device=cuda", 1e-4);
}

TEST(CudaDist, ResumedBf16RunEqualsUninterrupted) {
  if (!has_gpu()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_resume_equals_uninterrupted("--set train.device=cuda --set train.precision=bf16", "", 0.0);
}

// The workers of one node on one GPU (a one-GPU machine's baseline): NCCL refuses that, so the
// node all-reduces through Gloo, and lands where one worker with the whole batch does.
TEST(CudaDist, NodeOfWorkersSharingOneGpuEqualsOneWorker) {
  if (!has_gpu()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto one = run_lofi(train_cmd(data, dir + "/one", "--set train.device=cuda:0"));
  ASSERT_EQ(one.status, 0) << one.output;
  auto two = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/two", "--set train.device=cuda:0"));
  ASSERT_EQ(two.status, 0) << two.output;
  EXPECT_NE(two.output.find("all-reduce through Gloo"), std::string::npos) << two.output;
  EXPECT_GT(last_metrics(dir + "/two/node-00")["bytes_within_node"].get<int64_t>(), 0);
  EXPECT_LE(max_abs_diff(dir + "/one/node-00/final.safetensors", dir + "/two/node-00/final.safetensors"), 1e-4);
}

// The same job on the GPU and on the CPU ends at the same weights (to float rounding), and
// evaluation on either device agrees.
TEST(CudaDist, GpuTrainsAndEvaluatesLikeCpu) {
  if (!has_gpu()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/cpu", "--set train.device=cpu")).status, 0);
  auto gpu = run_lofi(train_cmd(data, dir + "/gpu", "--set train.device=cuda"));
  ASSERT_EQ(gpu.status, 0) << gpu.output;
  EXPECT_LE(max_abs_diff(dir + "/cpu/node-00/final.safetensors", dir + "/gpu/node-00/final.safetensors"), 1e-4);
  auto eval_on = [&](const std::string& device) {
    auto r = run_lofi("eval --model " + dir + "/gpu/node-00/final.safetensors --data val=" + data +
                      " --json " + dir + "/eval-" + device + ".json --set train.device=" + device);
    EXPECT_EQ(r.status, 0) << r.output;
    std::ifstream in(dir + "/eval-" + device + ".json");
    return nlohmann::json::parse(in);
  };
  const nlohmann::json cpu = eval_on("cpu"), cuda = eval_on("cuda");
  std::cout << "eval cpu: " << cpu.dump() << "\neval cuda: " << cuda.dump() << "\n";
  std::function<void(const nlohmann::json&, const nlohmann::json&)> expect_close = [&](const auto& x, const auto& y) {
    ASSERT_EQ(x.type(), y.type()) << x << " vs " << y;
    if (x.is_number_float()) {
      EXPECT_NEAR(x.template get<double>(), y.template get<double>(), 1e-4 * std::abs(x.template get<double>()));
    } else if (x.is_structured()) {
      ASSERT_EQ(x.size(), y.size());
      for (auto i = x.begin(), j = y.begin(); i != x.end(); ++i, ++j) expect_close(*i, *j);
    } else {
      EXPECT_EQ(x, y);
    }
  };
  expect_close(cpu, cuda);
}

// Every logged step's loss of a run's node-00 (metrics.jsonl).
std::vector<double> logged_losses(const std::string& run) {
  std::ifstream in(run + "/node-00/metrics.jsonl");
  std::vector<double> losses;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json m = nlohmann::json::parse(line);
    if (m.contains("loss")) losses.push_back(m["loss"].get<double>());
  }
  return losses;
}

// A run with train.cuda_graphs (and ENV) against one without, both with FLAGS and dropout, two
// micro-batches, clipping and a warm-up's changing learning rate: every logged loss and the final
// weights agree to TOLERANCE; the graphed run's output holds SAID.
void expect_graphed_equals_plain(const std::string& flags, const std::string& env, const std::string& said, double tolerance) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string all = flags + " --set model.dropout=0.1 --set train.grad_accum=2 --set train.steps=8 --set train.warmup_steps=4 "
                                  "--set train.log_every=1";
  auto plain = run_lofi(train_cmd(data, dir + "/plain", all));
  ASSERT_EQ(plain.status, 0) << plain.output;
  auto graphed = run_lofi(train_cmd(data, dir + "/graphed", all + " --set train.cuda_graphs=true"), env);
  ASSERT_EQ(graphed.status, 0) << graphed.output;
  EXPECT_NE(graphed.output.find(said), std::string::npos) << graphed.output;
  const std::vector<double> a = logged_losses(dir + "/plain"), b = logged_losses(dir + "/graphed");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tolerance * std::abs(a[i])) << "step " << i + 1;
  EXPECT_LE(max_abs_diff(dir + "/plain/node-00/final.safetensors", dir + "/graphed/node-00/final.safetensors"), tolerance);
}

// train.cuda_graphs: steps replayed from CUDA graphs land where eager steps do (dropout draws from
// the seed set before each replay), under bf16 autocast too; and a graphed run resumes to the same weights.
TEST(CudaDist, StepsReplayedFromCudaGraphsEqualEagerSteps) {
  if (!has_gpu()) GTEST_SKIP() << "no CUDA GPU visible";
  const std::string recorded = "step 2 records the step's kernels as CUDA graphs";
  expect_graphed_equals_plain("--set train.device=cuda", "", recorded, 1e-5);
  expect_graphed_equals_plain("--set train.device=cuda --set train.precision=bf16", "", recorded, 1e-5);
  expect_resume_equals_uninterrupted("--set train.device=cuda --set model.dropout=0.1 --set train.cuda_graphs=true", "", 1e-5);
}

// The step as it is staged for CUDA graphs, run with nothing recorded (LOFI_CUDA_GRAPHS_EAGER, so
// on this CPU): micro-batches copied into the task's tensors, gradients zeroed in place, the
// learning rate and the step number read from the device. It computes what the plain step does
// (the learning rate read as fp32, so to 1e-6, not bit for bit).
TEST(Dist, StepStagedForCudaGraphsEqualsThePlainStep) {
  expect_graphed_equals_plain("--set train.device=cpu", "LOFI_CUDA_GRAPHS_EAGER=1", "nothing recorded", 1e-6);
}

// train.cuda_graphs where it cannot run: one line naming it and what to change, and no step run.
TEST(CliDevice, CudaGraphsWhereTheyCannotRunAreRefusedByName) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto expect_refused = [&](const std::string& command, const std::string& names) {
    auto r = run_lofi(command);
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(names), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("step 1/"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir + "/run/node-00/final.safetensors")) << command;
  };
  expect_refused(train_cmd(data, dir + "/run", "--set train.cuda_graphs=true --set train.device=cpu"),
                 "train.cuda_graphs = true records the step's GPU kernels, but this worker computes on cpu: run on a GPU");
  expect_refused("launch --workers 2 -- " + train_cmd(data, dir + "/run", "--set train.cuda_graphs=true --set train.device=cpu"),
                 "train.cuda_graphs = true runs nodes of one worker, and node 0 has 2");
}

// Asking for what the machine lacks is one line naming the setting, and a non-zero exit.
TEST(CliDevice, MissingCudaAndBadSettingsAreOneLine) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto expect_refused = [&](const std::string& flags, const std::string& names) {
    auto r = run_lofi(train_cmd(data, dir + "/run", flags));
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(names), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir + "/run/node-00/final.safetensors")) << flags;
  };
  if (!has_gpu()) {
    expect_refused("--set train.device=cuda", "train.device = \"cuda\" but no CUDA GPU is visible");
    expect_refused("--set train.device=cuda:1", "no CUDA GPU is visible");
  }
  expect_refused("--set train.device=gpu", "train.device must be");
  expect_refused("--set train.device=cuda:x", "train.device = \"cuda:x\": expected");
  expect_refused("--set train.precision=fp16", "train.precision must be \"fp32\" or \"bf16\"");
  auto version = run_lofi("--version");
  EXPECT_EQ(version.status, 0);
  EXPECT_NE(version.output.find("LibTorch 2."), std::string::npos) << version.output;
  EXPECT_NE(version.output.find("CUDA: compiled in"), std::string::npos) << version.output;
  EXPECT_NE(version.output.find("NCCL: compiled in"), std::string::npos) << version.output;
}

// A run directory belongs to one run: a second start must say whether it continues (--resume)
// or replaces (--overwrite) what is there; a refusal deletes nothing.
TEST(RunDir, AnotherStartMustSayResumeOrOverwrite) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/run", "--set train.steps=8 --set train.ckpt_every=4")).status, 0);
  auto again = run_lofi(train_cmd(data, dir + "/run"));
  EXPECT_NE(again.status, 0);
  EXPECT_NE(again.output.find(dir + "/run/node-00 already holds a run (final.safetensors, ckpt, metrics.jsonl"), std::string::npos)
      << again.output;
  EXPECT_NE(again.output.find("--resume"), std::string::npos) << again.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/run/node-00/ckpt/step-000008.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/run/node-00/final.safetensors"));
  auto both = run_lofi(train_cmd(data, dir + "/run", "--resume --overwrite"));
  EXPECT_NE(both.status, 0);
  EXPECT_NE(both.output.find("excludes"), std::string::npos) << both.output;
  auto over = run_lofi(train_cmd(data, dir + "/run", "--overwrite"));  // 6 steps, no checkpoint interval
  ASSERT_EQ(over.status, 0) << over.output;
  EXPECT_NE(over.output.find("--overwrite: removing the previous run's"), std::string::npos) << over.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/run/node-00/ckpt/step-000008.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/run/node-00/ckpt/step-000004.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/run/node-00/ckpt/step-000006.safetensors"));
  EXPECT_EQ(last_metrics(dir + "/run/node-00")["step"], 6);
}

// Two workers training RUN with FLAGS.
test::CommandResult launch_two(const std::string& data, const std::string& run, const std::string& flags) {
  return run_lofi("launch --workers 2 -- " + train_cmd(data, run, flags));
}

// Removes NODE_DIR's checkpoints of steps 4 and 6, as a node that died after step 2 would leave it.
void lose_checkpoints_after_step_2(const std::string& node_dir) {
  for (const char* f : {"step-000004", "step-000006"})
    for (const char* ext : {".safetensors", ".optim.safetensors"}) std::filesystem::remove(node_dir + "/ckpt/" + f + ext);
}

TEST(Dist, SyncedNodesResumeFromOneStep) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  std::string flags = "--set dist.nodes=2 --set dist.sync_every=2 --set train.ckpt_every=2";
  auto full = launch_two(data, dir + "/full", flags);
  ASSERT_EQ(full.status, 0) << full.output;
  auto part = launch_two(data, dir + "/part", flags);
  ASSERT_EQ(part.status, 0) << part.output;
  // Node 1 lost its checkpoints after step 2; node 0 kept step 4. Both must restart from step 2.
  lose_checkpoints_after_step_2(dir + "/part/node-01");
  auto resumed = launch_two(data, dir + "/part", flags + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  for (const char* node : {"node-00", "node-01"})
    EXPECT_EQ(max_abs_diff(dir + "/full/" + std::string(node) + "/final.safetensors",
                           dir + "/part/" + std::string(node) + "/final.safetensors"), 0.0) << node;
}

// DiLoCo: an outer Nesterov step at every sync; its state resumes exactly, and it differs from
// plain averaging (local SGD) on the same schedule.
TEST(Dist, DilocoOuterStepsResumeExactly) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string sync = "--set dist.nodes=2 --set dist.sync_every=2 --set train.ckpt_every=2";
  const std::string flags = sync + " --set dist.outer_optimizer=nesterov";
  auto full = launch_two(data, dir + "/full", flags);
  ASSERT_EQ(full.status, 0) << full.output;
  auto local_sgd = launch_two(data, dir + "/local", sync);
  ASSERT_EQ(local_sgd.status, 0) << local_sgd.output;
  auto part = launch_two(data, dir + "/part", flags);
  ASSERT_EQ(part.status, 0) << part.output;
  for (const char* node : {"/node-00", "/node-01"}) lose_checkpoints_after_step_2(dir + "/part" + node);
  auto resumed = launch_two(data, dir + "/part", flags + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  for (const char* node : {"/node-00", "/node-01"})
    EXPECT_EQ(max_abs_diff(dir + "/full" + node + "/final.safetensors", dir + "/part" + node + "/final.safetensors"), 0.0)
        << node;
  // Step 6 is a sync: both nodes hold the outer optimizer's new weights.
  EXPECT_EQ(max_abs_diff(dir + "/full/node-00/final.safetensors", dir + "/full/node-01/final.safetensors"), 0.0);
  EXPECT_GT(max_abs_diff(dir + "/full/node-00/final.safetensors", dir + "/local/node-00/final.safetensors"), 1e-4);
  io::SafetensorsFile state(dir + "/full/node-00/ckpt/step-000006.optim.safetensors");
  EXPECT_NE(state.find("outer.momentum.model.decoder.embed_tokens.weight"), nullptr);
}

TEST(Dist, SyncEveryAveragesNodes) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto r = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/run", "--set dist.nodes=2 --set dist.sync_every=3"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_GT(last_metrics(dir + "/run/node-00")["bytes_between_nodes"].get<int64_t>(), 0);
  // The last step (6) is a sync step: both nodes end on the same weights.
  EXPECT_LE(max_abs_diff(dir + "/run/node-00/final.safetensors", dir + "/run/node-01/final.safetensors"), 1e-6);
}

TEST(Dist, RendezvousTimesOutWithAMessage) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 5000);
  // The store is hosted here, as torchrun's agent hosts it (port 0: no bind-close-reuse race).
  auto store = dist::host_store("127.0.0.1", 0, 30, "test");
  const std::string port = std::to_string(dist::store_port(store));
  for (const char* rank : {"0", "1"}) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = run_lofi(train_cmd(data, dir + "/run", "--set dist.timeout_s=2"),
                      std::string("RANK=") + rank + " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 TORCHELASTIC_USE_AGENT_STORE=True MASTER_PORT=" + port);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("rendezvous"), std::string::npos) << r.output;
    EXPECT_LT(seconds, 30) << "rank " << rank;
  }
}

// Without a launcher: rank 0 hosts the store itself at MASTER_PORT and the other rank joins it;
// a 2-worker baseline started by hand as two processes trains like the launched one.
TEST(Dist, WorkersStartedByHandMeetAtRankZerosStore) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto launched = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/launched"));
  ASSERT_EQ(launched.status, 0) << launched.output;
  for (int attempt = 0; attempt < 3; ++attempt) {  // a port taken between the probe and rank 0's bind: retry
    int port = 0;
    {
      auto probe = dist::host_store("127.0.0.1", 0, 30, "test");
      port = dist::store_port(probe);
    }
    const std::string env = " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " LOFI_THREADS=1";
    std::string cmd = std::string(LOFI_BIN) + " " + train_cmd(data, dir + "/by-hand") + " > " + dir + "/rank1.log 2>&1";
    FILE* rank1 = ::popen(("RANK=1" + env + " " + cmd).c_str(), "r");
    auto rank0 = run_lofi(train_cmd(data, dir + "/by-hand"), "RANK=0" + env);
    const int status1 = ::pclose(rank1);
    if (rank0.output.find("Address already in use") != std::string::npos) continue;
    ASSERT_EQ(rank0.status, 0) << rank0.output;
    ASSERT_EQ(status1, 0);
    EXPECT_EQ(max_abs_diff(dir + "/launched/node-00/final.safetensors", dir + "/by-hand/node-00/final.safetensors"), 0.0);
    return;
  }
  FAIL() << "port taken three times in a row";
}

// Workers started with different settings are refused at the rendezvous, by key on the worker
// that differs and by rank on rank 0, before any collective (where they would fail inside Gloo
// or, for a learning rate or a seed, train apart silently).
TEST(Dist, WorkersWithOtherSettingsAreRefusedByKey) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  for (int attempt = 0; attempt < 3; ++attempt) {  // a port taken between the probe and rank 0's bind: retry
    int port = 0;
    {
      auto probe = dist::host_store("127.0.0.1", 0, 30, "test");
      port = dist::store_port(probe);
    }
    const std::string env = " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " LOFI_THREADS=1";
    std::string cmd = std::string(LOFI_BIN) + " " + train_cmd(data, dir + "/run", "--set train.lr=0.01") + " > " + dir + "/rank1.log 2>&1";
    FILE* rank1 = ::popen(("RANK=1" + env + " " + cmd).c_str(), "r");
    auto rank0 = run_lofi(train_cmd(data, dir + "/run"), "RANK=0" + env);
    const int status1 = ::pclose(rank1);
    if (rank0.output.find("Address already in use") != std::string::npos) continue;
    std::ifstream log(dir + "/rank1.log");
    const std::string rank1_output((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_NE(rank0.status, 0) << rank0.output;
    EXPECT_NE(status1, 0) << rank1_output;
    EXPECT_NE(rank1_output.find("rank 1's settings differ from rank 0's: train.lr = 0.01 here"), std::string::npos) << rank1_output;
    EXPECT_NE(rank0.output.find("rendezvous: rank 1 run other settings than rank 0"), std::string::npos) << rank0.output;
    EXPECT_FALSE(std::filesystem::exists(dir + "/run/node-00/final.safetensors"));
    return;
  }
  FAIL() << "port taken three times in a row";
}

// A worker whose MASTER_PORT holds something that accepts connections but never answers as a
// store (another service) ends with one line within 2 x dist.timeout_s + 10 s instead of waiting
// for it forever; a signal during the rendezvous ends it at once.
TEST(Dist, RendezvousWithASilentListenerOrASignalEnds) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  // A listener that never accepts: connections complete in its backlog and get no answer.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string env = "RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(ntohs(addr.sin_port)) + " LOFI_THREADS=1";
  auto t0 = std::chrono::steady_clock::now();
  auto silent = run_lofi(train_cmd(data, dir + "/silent", "--set dist.timeout_s=2"), env);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(listener);
  EXPECT_NE(silent.status, 0) << silent.output;
  EXPECT_NE(silent.output.find("rendezvous"), std::string::npos) << silent.output;
  EXPECT_LT(waited, 40.0) << silent.output;
  // Nothing listens at all: the worker would retry for dist.timeout_s = 120 s; a SIGTERM ends it.
  // The signal goes once the worker has made its node's lock (node 1's leader, just before the
  // rendezvous): a loaded machine can take seconds to start a worker, before its handler is set.
  int free_port = 0;
  {
    auto probe = dist::host_store("127.0.0.1", 0, 30, "test");
    free_port = dist::store_port(probe);
  }
  const std::string lock = dir + "/stopped/node-01/lock";
  auto stopped = test::run_shell(
      "RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port) + " " + LOFI_BIN + " " +
      train_cmd(data, dir + "/stopped", "--set dist.timeout_s=120 --set dist.nodes=2") + " > " + dir + "/stopped.log 2>&1 & pid=$!; " +
      "i=0; while [ ! -e " + lock + " ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; " +
      "t=$(date +%s%N); kill -TERM $pid; wait $pid; s=$?; echo stop_ms=$(( ($(date +%s%N) - t) / 1000000 )) status=$s; cat " + dir +
      "/stopped.log");
  EXPECT_NE(stopped.output.find("stopped by signal 15 during the rendezvous"), std::string::npos) << stopped.output;
  const size_t at = stopped.output.find("stop_ms=");
  ASSERT_NE(at, std::string::npos) << stopped.output;
  EXPECT_LT(std::stoll(stopped.output.substr(at + 8)), 20000) << stopped.output;
  // Nothing listens within dist.timeout_s: lofi's one line, without c10d's logs of each failed
  // connection (stack traces, about 40 lines); a MASTER_ADDR that does not resolve is said so.
  const std::string port = " MASTER_PORT=" + std::to_string(free_port) + " LOFI_THREADS=1";
  auto absent = run_lofi(train_cmd(data, dir + "/absent", "--set dist.timeout_s=2"), "RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1" + port);
  EXPECT_NE(absent.status, 0);
  EXPECT_NE(absent.output.find("never came up"), std::string::npos) << absent.output;
  EXPECT_EQ(absent.output.find("frame #"), std::string::npos) << absent.output;
  EXPECT_EQ(absent.output.find("[c10d]"), std::string::npos) << absent.output;
  auto unresolved =
      run_lofi(train_cmd(data, dir + "/unresolved", "--set dist.timeout_s=2"), "RANK=1 WORLD_SIZE=2 MASTER_ADDR=no-such-host.invalid" + port);
  EXPECT_NE(unresolved.status, 0);
  EXPECT_NE(unresolved.output.find("MASTER_ADDR = \"no-such-host.invalid\" does not resolve"), std::string::npos) << unresolved.output;
}

// The real torchrun of the project's PyTorch: its agent hosts the store (TORCHELASTIC_USE_AGENT_STORE)
// and lofi joins it; the baseline equals `lofi launch`'s bit for bit, and lo-fi nodes merge.
TEST(Dist, RealTorchrunRunsTheBaselineAndLofi) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string python = LOFI_TEST_PYTHON;
  const std::string torchrun = python.substr(0, python.rfind('/') + 1) + "torchrun";
  ASSERT_TRUE(std::filesystem::exists(torchrun)) << torchrun;
  auto launched = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + "/launched"));
  ASSERT_EQ(launched.status, 0) << launched.output;
  auto run_torchrun = [&](const std::string& run, const std::string& extra) {
    return test::run_shell(torchrun + " --standalone --nproc-per-node 2 --no-python " + LOFI_BIN + " " +
                           train_cmd(data, run, extra) + " 2>&1");
  };
  auto base = run_torchrun(dir + "/torchrun", "");
  ASSERT_EQ(base.status, 0) << base.output;
  EXPECT_EQ(max_abs_diff(dir + "/launched/node-00/final.safetensors", dir + "/torchrun/node-00/final.safetensors"), 0.0);
  auto lofi = run_torchrun(dir + "/lofi", "--set dist.nodes=2");
  ASSERT_EQ(lofi.status, 0) << lofi.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/lofi/merged.safetensors"));
  EXPECT_EQ(last_metrics(dir + "/lofi/node-01")["bytes_between_nodes"].get<int64_t>(), 0);
  // As multi-machine jobs start it: c10d rendezvous at an endpoint, --nnodes and --node_rank
  // (one machine here), underscores in the flags; the same lo-fi result.
  int port = 0;
  {
    auto probe = dist::host_store("127.0.0.1", 0, 30, "test");
    port = dist::store_port(probe);
  }
  auto rdzv = test::run_shell(torchrun + " --nnodes 1 --node_rank 0 --nproc_per_node 2 --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:" +
                              std::to_string(port) + " --no-python " + LOFI_BIN + " " +
                              train_cmd(data, dir + "/rdzv", "--set dist.nodes=2") + " 2>&1");
  ASSERT_EQ(rdzv.status, 0) << rdzv.output;
  EXPECT_EQ(max_abs_diff(dir + "/lofi/merged.safetensors", dir + "/rdzv/merged.safetensors"), 0.0);
}

TEST(Dist, LaunchFailsWithTheFirstWorkerError) {
  std::string dir = test::scratch_dir();
  auto r = run_lofi("launch --workers 2 -- train --set data.train=" + dir + "/missing.bin --set run.dir=" + dir + "/run");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("missing.bin"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lofi
