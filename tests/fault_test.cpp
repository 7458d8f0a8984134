// Fault injection: real worker processes over loopback, killed (SIGKILL), hung (SIGSTOP),
// diverging, racing for one run directory, resuming from damaged checkpoints, writing to a full
// disk. Each test asserts the files left behind and the exit codes, and is bounded in time.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "lofi/dist/node_status.h"
#include "lofi/dist/store.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi {
namespace {

namespace fs = std::filesystem;
using test::last_metrics;
using test::max_abs_diff;
using test::run_lofi;
using Clock = std::chrono::steady_clock;

std::string train_cmd(const std::string& data, const std::string& run, const std::string& extra = "") {
  return "train " + test::tiny_train_flags(data, run) + " " + extra;
}

// A command started in the background, its output going to LOG.
struct Background {
  pid_t pid = -1;
  std::string log;
};

Background start(const std::string& command, const std::string& log) {
  Background b{-1, log};
  b.pid = ::fork();
  if (b.pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + command + " > " + log + " 2>&1").c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return b;
}

// The exit status of B (128 + signal when killed), or -1 after SECONDS (B is then killed).
int finish(Background& b, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (::waitpid(b.pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      ::kill(b.pid, SIGKILL);
      ::waitpid(b.pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_log(const Background& b) { return io::read_text_file(b.log); }

// Whether B has ended (it is left for finish() to reap).
bool ended(const Background& b) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(b.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == b.pid;
}

// Waits (up to 60 s, while JOB runs) until NODE_DIR's metrics show STEP or more; returns its
// leader's pid from status.json, or -1.
int64_t wait_for_step(const std::string& node_dir, int64_t step, const Background& job) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline && !ended(job)) {
    std::ifstream in(node_dir + "/metrics.jsonl");
    std::string line, last;
    while (std::getline(in, line)) last = line;
    auto record = nlohmann::json::parse(last, nullptr, false);
    auto status = dist::read_node_status(node_dir);
    if (status && record.is_object() && record.value("step", int64_t{0}) >= step) return status->pid;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

// The worker processes of a `lofi launch` job, in rank order (the launcher forks them in order;
// pids may wrap, which a test's few processes do not meet).
std::vector<pid_t> workers_of(const Background& launcher) {
  std::istringstream in(test::run_shell("pgrep -P " + std::to_string(launcher.pid)).output);
  std::vector<pid_t> children;
  for (pid_t p; in >> p;) children.push_back(p);
  std::sort(children.begin(), children.end());
  return children;
}

// The element-wise mean of the finals of NODES, against MERGED.
double diff_from_mean(const std::string& run, const std::vector<int>& nodes, const std::string& merged) {
  std::vector<io::NamedTensors> finals;
  for (int k : nodes) finals.push_back(io::SafetensorsFile(run + "/node-0" + std::to_string(k) + "/final.safetensors").load_all());
  io::SafetensorsFile m(merged);
  double worst = 0;
  for (size_t t = 0; t < finals[0].size(); ++t) {
    torch::Tensor sum = torch::zeros_like(finals[0][t].second, torch::kFloat64);
    for (const auto& f : finals) sum += f[t].second.to(torch::kFloat64);
    const torch::Tensor mine = m.load(finals[0][t].first).to(torch::kFloat64);
    worst = std::max(worst, (sum / static_cast<double>(nodes.size()) - mine).abs().max().item<double>());
  }
  return worst;
}

const std::string kLong = "--set train.steps=1000 --set train.warmup_steps=10";

// How a background job ended: its exit status (-1: it timed out, or never got as far as it had to)
// and its log.
struct Ended {
  int status = -1;
  std::string log;
};

// `lofi launch --workers WORKERS` of the tiny training with EXTRA, node NODE's leader killed (-9)
// once that node's metrics reach step 20; waits up to 300 s for the launcher to end.
Ended kill_node_at_step_20(const std::string& dir, const std::string& data, const std::string& run, int workers,
                           const std::string& extra, int node) {
  Background job = start(std::string(LOFI_BIN) + " launch --workers " + std::to_string(workers) + " -- " +
                             train_cmd(data, run, kLong + " " + extra),
                         dir + "/launch.log");
  const int64_t pid = wait_for_step(run + "/node-0" + std::to_string(node), 20, job);
  if (pid <= 0) {
    ::kill(job.pid, SIGKILL);
    finish(job, 10);
    return {-1, "node " + std::to_string(node) + " never reached step 20: " + read_log(job)};
  }
  ::kill(static_cast<pid_t>(pid), SIGKILL);
  const int status = finish(job, 300);
  return {status, (status == -1 ? "timed out: " : "") + read_log(job)};
}

// kill -9 of one worker of a 4-node lo-fi launch: the other three train to the end and merge, the
// launcher names the failed node and exits non-zero.
TEST(DistFault, KilledWorkerCostsItsNodeOnly) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  const auto [status, log] = kill_node_at_step_20(dir, data, run, 4, "--set dist.nodes=4 --set dist.min_nodes=3", 2);
  ASSERT_NE(status, -1) << log;
  EXPECT_NE(status, 0) << log;
  for (int k : {0, 1, 3}) EXPECT_EQ(last_metrics(run + "/node-0" + std::to_string(k))["step"], 1000) << k;
  EXPECT_FALSE(fs::exists(run + "/node-02/final.safetensors"));
  // Its status said "training" when it died; the launcher, which saw it die, says so there.
  const auto killed = dist::read_node_status(run + "/node-02");
  ASSERT_TRUE(killed.has_value());
  EXPECT_EQ(killed->state, "failed");
  EXPECT_NE(killed->message.find("rank 2 was killed by signal 9"), std::string::npos) << killed->message;
  ASSERT_TRUE(fs::exists(run + "/merged.safetensors")) << log;
  io::SafetensorsFile merged(run + "/merged.safetensors");
  EXPECT_EQ(merged.metadata().at("lofi.merged_nodes"), "0, 1, 3");
  EXPECT_EQ(merged.metadata().at("lofi.failed_nodes"), "2");
  EXPECT_LE(diff_from_mean(run, {0, 1, 3}, run + "/merged.safetensors"), 1e-6);
  // The last line names the failed node, how it ended, and where the survivors' merge is.
  const std::string last_line = log.substr(log.rfind("launch: "));
  EXPECT_NE(last_line.find("node 2 failed (rank 2 was killed by signal 9, last step "), std::string::npos) << log;
  EXPECT_NE(last_line.find("the surviving nodes (0, 1, 3) are merged in " + run + "/merged.safetensors"), std::string::npos)
      << log;
}

// Without a launcher, rank 0 hosts the store; its death leaves the other nodes training, and the
// lowest surviving node merges them, naming the dead one.
TEST(DistFault, DeadRankZeroTakesNoOtherNodeDown) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  std::vector<Background> ranks;
  for (int attempt = 0; attempt < 3; ++attempt) {
    int port = 0;
    {
      auto probe = dist::host_store("127.0.0.1", 0, 30, "test");
      port = dist::store_port(probe);
    }
    ranks.clear();
    for (int r = 0; r < 3; ++r)
      ranks.push_back(start("env RANK=" + std::to_string(r) + " WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                                std::to_string(port) + " LOFI_THREADS=1 " + LOFI_BIN + " " +
                                train_cmd(data, run, kLong + " --set dist.nodes=3 --set dist.min_nodes=2 --set train.batch_size=12 --overwrite"),
                            dir + "/rank" + std::to_string(r) + ".log"));
    const int64_t pid = wait_for_step(run + "/node-00", 20, ranks[0]);
    if (pid > 0) {
      ::kill(static_cast<pid_t>(pid), SIGKILL);
      break;
    }
    for (auto& r : ranks) ::kill(r.pid, SIGKILL), finish(r, 10);  // the port was taken: again
  }
  EXPECT_EQ(finish(ranks[0], 10), 128 + SIGKILL);
  const int one = finish(ranks[1], 300), two = finish(ranks[2], 300);
  const std::string log1 = read_log(ranks[1]);
  EXPECT_EQ(one, 0) << log1;
  EXPECT_EQ(two, 0) << read_log(ranks[2]);
  ASSERT_TRUE(fs::exists(run + "/merged.safetensors")) << log1;
  io::SafetensorsFile merged(run + "/merged.safetensors");
  EXPECT_EQ(merged.metadata().at("lofi.merged_nodes"), "1, 2");
  EXPECT_EQ(merged.metadata().at("lofi.failed_nodes"), "0");
  EXPECT_LE(diff_from_mean(run, {1, 2}, run + "/merged.safetensors"), 1e-6);
  EXPECT_NE(log1.find("node 0: its worker (pid "), std::string::npos) << log1;
  EXPECT_NE(log1.find("merged the 2 finished nodes (1, 2) of 3"), std::string::npos) << log1;
}

// A dead worker inside a 2-worker node ends that node only; with dist.min_nodes left at all,
// the merge is refused, the survivor's final stays, and the message says how to merge it.
TEST(DistFault, DeadWorkerInsideANodeEndsThatNode) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  Background job = start(std::string(LOFI_BIN) + " launch --workers 4 -- " + train_cmd(data, run, kLong + " --set dist.nodes=2"),
                         dir + "/launch.log");
  ASSERT_GT(wait_for_step(run + "/node-00", 20, job), 0) << read_log(job);
  // Rank 1 is node 0's second worker.
  const std::vector<pid_t> children = workers_of(job);
  ASSERT_EQ(children.size(), 4u);
  ::kill(children[1], SIGKILL);
  const int status = finish(job, 300);
  const std::string log = read_log(job);
  EXPECT_NE(status, 0) << log;
  ASSERT_NE(status, -1) << log;
  EXPECT_TRUE(fs::exists(run + "/node-01/final.safetensors")) << log;
  EXPECT_EQ(last_metrics(run + "/node-01")["step"], 1000);
  EXPECT_FALSE(fs::exists(run + "/node-00/final.safetensors"));
  EXPECT_FALSE(fs::exists(run + "/merged.safetensors"));
  EXPECT_NE(log.find("merge: 1 of 2 nodes finished"), std::string::npos) << log;
  EXPECT_NE(log.find("lofi average " + run + " --min-inputs 1"), std::string::npos) << log;
  const std::string last_line = log.substr(log.rfind("launch: "));
  EXPECT_NE(last_line.find("node 0 failed (rank 1 was killed by signal 9"), std::string::npos) << log;
  EXPECT_NE(last_line.find("no merge of the surviving nodes was written"), std::string::npos) << log;
  // Its partner's collective failed with Gloo's words, told without Gloo's source location.
  EXPECT_EQ(log.find("pair.cc"), std::string::npos) << log;
}

// dist.min_nodes set explicitly to every node: one dies, so no merge is written (not a merge of
// the lone survivor), the message names the setting, and the survivor's final stays.
TEST(DistFault, MinNodesIsHeldWhenANodeDies) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  const auto [status, log] = kill_node_at_step_20(dir, data, run, 2, "--set dist.nodes=2 --set dist.min_nodes=2", 1);
  ASSERT_NE(status, -1) << log;
  EXPECT_NE(status, 0) << log;
  EXPECT_TRUE(fs::exists(run + "/node-00/final.safetensors")) << log;
  EXPECT_FALSE(fs::exists(run + "/node-01/final.safetensors"));
  EXPECT_FALSE(fs::exists(run + "/merged.safetensors")) << log;
  EXPECT_NE(log.find("merge: 1 of 2 nodes finished"), std::string::npos) << log;
  EXPECT_NE(log.find("dist.min_nodes = 2, so no merge is written"), std::string::npos) << log;
  EXPECT_NE(log.find("lofi average " + run + " --min-inputs 1"), std::string::npos) << log;
}

// After a shared warm start's split the nodes never meet again: a node killed then fails alone, and
// the other trains to the end and is merged under dist.min_nodes = 1.
TEST(DistFault, AfterTheWarmStartANodeFailsAlone) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  const auto [status, log] =
      kill_node_at_step_20(dir, data, run, 2, "--set dist.nodes=2 --set dist.min_nodes=1 --set dist.warm_start_steps=10", 1);
  ASSERT_NE(status, -1) << log;
  EXPECT_NE(status, 0) << log;
  EXPECT_NE(log.find("stopping node 1's workers, the other nodes train on"), std::string::npos) << log;
  EXPECT_EQ(last_metrics(run + "/node-00")["step"], 1000) << log;
  ASSERT_TRUE(fs::exists(run + "/merged.safetensors")) << log;
  EXPECT_EQ(io::SafetensorsFile(run + "/merged.safetensors").metadata().at("lofi.merged_nodes"), "0");
}

// A finished 2-node run resumed with more steps, one node killed: the first attempt's merge,
// averaging check and finals are retired (moved to retired/), so no stale merge stays beside the
// failure, and the recovery command the job prints averages this attempt's final alone.
TEST(DistFault, ResumedRunRetiresTheResultsOfTheAttemptBefore) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  auto first = run_lofi("launch --workers 2 -- " + train_cmd(data, run, "--set dist.nodes=2"));
  ASSERT_EQ(first.status, 0) << first.output;
  ASSERT_TRUE(fs::exists(run + "/merged.safetensors"));
  Background job = start(std::string(LOFI_BIN) + " launch --workers 2 -- " +
                             train_cmd(data, run, kLong + " --set dist.nodes=2 --resume --resume-changed"),
                         dir + "/launch.log");
  const int64_t pid = wait_for_step(run + "/node-01", 20, job);
  ASSERT_GT(pid, 0) << read_log(job);
  ::kill(static_cast<pid_t>(pid), SIGKILL);
  const int status = finish(job, 300);
  const std::string log = read_log(job);
  EXPECT_NE(status, 0) << log;
  ASSERT_NE(status, -1) << "timed out: " << log;
  EXPECT_NE(log.find("--resume: moved the previous attempt's merged.safetensors"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(run + "/merged.safetensors")) << log;
  EXPECT_FALSE(fs::exists(run + "/averaging-check.json")) << log;
  EXPECT_TRUE(fs::exists(run + "/retired/merged.safetensors"));
  EXPECT_FALSE(fs::exists(run + "/node-01/final.safetensors"));  // the dead node's step-6 final is retired
  EXPECT_TRUE(fs::exists(run + "/node-01/retired/final.safetensors"));
  ASSERT_TRUE(fs::exists(run + "/node-00/final.safetensors"));
  EXPECT_EQ(io::SafetensorsFile(run + "/node-00/final.safetensors").metadata().at("lofi.step"), "1000");
  // The command the job suggests works: this attempt's final alone.
  auto recovered = run_lofi("average " + run + " --min-inputs 1 --out " + dir + "/recovered.safetensors");
  ASSERT_EQ(recovered.status, 0) << recovered.output;
  EXPECT_EQ(max_abs_diff(dir + "/recovered.safetensors", run + "/node-00/final.safetensors"), 0.0);
}

// SIGTERM to `lofi launch` (a scheduler's preemption, Ctrl-C): forwarded; each worker stops at its
// next read, its node's leader saves a checkpoint there and writes "stopped by signal 15 ... at
// step N" as the node's status; the launcher prints a line per node and exits 128 + 15; nothing
// temporary is left.
TEST(DistFault, SigtermStopsEveryNodeAtACheckpoint) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  Background job = start(std::string(LOFI_BIN) + " launch --workers 2 -- " + train_cmd(data, run, kLong + " --set dist.nodes=2"),
                         dir + "/launch.log");
  ASSERT_GT(wait_for_step(run + "/node-01", 20, job), 0) << read_log(job);
  ::kill(job.pid, SIGTERM);
  const int status = finish(job, 120);
  const std::string log = read_log(job);
  EXPECT_EQ(status, 128 + SIGTERM) << log;
  for (int k : {0, 1}) {
    const std::string node = run + "/node-0" + std::to_string(k);
    const auto s = dist::read_node_status(node);
    ASSERT_TRUE(s.has_value()) << node;
    EXPECT_EQ(s->state, "failed");
    EXPECT_NE(s->message.find("stopped by signal 15"), std::string::npos) << s->message;
    const size_t at = s->message.find(" at step ");
    ASSERT_NE(at, std::string::npos) << s->message;
    const int64_t step = std::stoll(s->message.substr(at + 9));
    EXPECT_GT(step, 0);  // each node at its own next read after the signal (node 0 may be behind node 1)
    EXPECT_LT(step, 1000);
    EXPECT_EQ(s->step, step) << s->message;  // the status's step is the step stopped at
    char name[40];
    std::snprintf(name, sizeof(name), "/ckpt/step-%06lld.safetensors", static_cast<long long>(step));
    EXPECT_TRUE(fs::exists(node + name)) << node + name << "\n" << log;
    EXPECT_NE(log.find("launch: node " + std::to_string(k) + ": node " + std::to_string(k) + " stopped by signal 15"),
              std::string::npos) << log;
    EXPECT_FALSE(fs::exists(node + "/final.safetensors"));
  }
  EXPECT_FALSE(fs::exists(run + "/merged.safetensors"));
  for (const auto& entry : fs::recursive_directory_iterator(run))
    EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << entry.path() << " was left";
}

// The baseline is one node: a dead worker still stops the job at once, naming the failure.
TEST(DistFault, BaselineStillFailsFast) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  Background job = start(std::string(LOFI_BIN) + " launch --workers 2 -- " + train_cmd(data, run, kLong), dir + "/launch.log");
  ASSERT_GT(wait_for_step(run + "/node-00", 10, job), 0) << read_log(job);
  const std::vector<pid_t> children = workers_of(job);
  ASSERT_EQ(children.size(), 2u);
  const auto t0 = Clock::now();
  ::kill(children[1], SIGKILL);
  const int status = finish(job, 120);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 30);
  const std::string log = read_log(job);
  EXPECT_NE(status, 0) << log;
  EXPECT_NE(log.find("launch: rank 1 was killed by signal 9; stopping the other workers"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(run + "/node-00/final.safetensors"));
}

// A hung worker (SIGSTOP) stops its node's heartbeat: after dist.timeout_s the launcher ends that
// node, and the other node finishes and merges alone.
TEST(DistFault, HungWorkerTimesOut) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  Background job = start(std::string(LOFI_BIN) + " launch --workers 2 -- " +
                             train_cmd(data, run, kLong + " --set dist.nodes=2 --set dist.min_nodes=1 --set dist.timeout_s=3"),
                         dir + "/launch.log");
  const int64_t pid = wait_for_step(run + "/node-01", 10, job);
  ASSERT_GT(pid, 0) << read_log(job);
  ::kill(static_cast<pid_t>(pid), SIGSTOP);
  const int status = finish(job, 300);
  const std::string log = read_log(job);
  EXPECT_NE(status, 0) << log;
  ASSERT_NE(status, -1) << log;
  EXPECT_NE(log.find("node 1 failed"), std::string::npos) << log;
  EXPECT_NE(log.find("(dist.timeout_s = 3)"), std::string::npos) << log;
  ASSERT_TRUE(fs::exists(run + "/merged.safetensors")) << log;
  EXPECT_EQ(io::SafetensorsFile(run + "/merged.safetensors").metadata().at("lofi.merged_nodes"), "0");
  EXPECT_FALSE(fs::exists(run + "/node-01/final.safetensors"));
}

// A lone lo-fi worker whose peer never comes does not train alone: it fails after dist.timeout_s
// naming the missing rank and the time it waited.
TEST(DistFault, LoneWorkerNamesTheMissingRanks) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 5000);
  auto store = dist::host_store("127.0.0.1", 0, 30, "test");
  const std::string env = "RANK=1 WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 TORCHELASTIC_USE_AGENT_STORE=True MASTER_PORT=" +
                          std::to_string(dist::store_port(store));
  auto r = run_lofi(train_cmd(data, dir + "/run", "--set dist.nodes=3 --set train.batch_size=12 --set dist.timeout_s=2"), env);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("rendezvous: ranks 0, 2 of 3 never joined the store at 127.0.0.1:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1 waited 2."), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/run/node-01/final.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/run/node-01/metrics.jsonl"));
}

// Two trains into one run directory: the second is refused, naming the first one's pid.
TEST(DistFault, SecondWriterIsRefused) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), run = dir + "/run";
  Background first = start(std::string(LOFI_BIN) + " " + train_cmd(data, run, kLong), dir + "/first.log");
  const int64_t pid = wait_for_step(run + "/node-00", 2, first);
  ASSERT_GT(pid, 0) << read_log(first);
  auto second = run_lofi(train_cmd(data, run, "--resume"));
  ::kill(first.pid, SIGKILL);
  finish(first, 30);
  EXPECT_NE(second.status, 0);
  EXPECT_NE(second.output.find(run + "/node-00 is in use by another train (pid " + std::to_string(pid) + " on "),
            std::string::npos) << second.output;
  // The killed first run's lock went with it: resuming is possible at once.
  auto resumed = run_lofi(train_cmd(data, run, "--overwrite"));
  EXPECT_EQ(resumed.status, 0) << resumed.output;
}

// A diverging run stops with the step and the values, exits non-zero and writes no final; in a
// node of two workers both stop by themselves (no launcher to stop them).
TEST(DistFault, NonFiniteLossStopsTheNode) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string diverge = "--set train.lr=1e30 --set train.min_lr=0 --set train.warmup_steps=0 --set train.grad_clip=0";
  auto r = run_lofi(train_cmd(data, dir + "/run", diverge));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("node 0 diverged at step "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train.skip_nonfinite"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/run/node-00/final.safetensors"));
  auto status = dist::read_node_status(dir + "/run/node-00");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->state, "failed");
  // Skipping: up to N steps without an update, then the same stop, saying so.
  auto skip = run_lofi(train_cmd(data, dir + "/skip", diverge + " --set train.skip_nonfinite=2"));
  EXPECT_NE(skip.status, 0);
  // Steps are read every train.log_every: the skips are reported at the read after them.
  EXPECT_NE(skip.output.find("skipped (2 of train.skip_nonfinite = 2)"), std::string::npos) << skip.output;
  EXPECT_NE(skip.output.find("(2 such steps skipped already)"), std::string::npos) << skip.output;
  EXPECT_EQ(last_metrics(dir + "/skip/node-00")["skipped_nonfinite"], 2);
  // Two workers of one node, started by hand.
  for (int attempt = 0; attempt < 3; ++attempt) {
    int port = 0;
    {
      auto probe = dist::host_store("127.0.0.1", 0, 30, "test");
      port = dist::store_port(probe);
    }
    std::vector<Background> ranks;
    for (int k = 0; k < 2; ++k)
      ranks.push_back(start("env RANK=" + std::to_string(k) + " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                                std::to_string(port) + " LOFI_THREADS=1 " + LOFI_BIN + " " +
                                train_cmd(data, dir + "/pair", diverge + " --overwrite"),
                            dir + "/pair" + std::to_string(k) + ".log"));
    const int s0 = finish(ranks[0], 120), s1 = finish(ranks[1], 120);
    const std::string log0 = read_log(ranks[0]), log1 = read_log(ranks[1]);
    if (log0.find("Address already in use") != std::string::npos) continue;
    EXPECT_EQ(s0, 1) << log0;
    EXPECT_EQ(s1, 1) << log1;
    EXPECT_NE(log0.find("diverged at step"), std::string::npos) << log0;
    EXPECT_NE(log1.find("diverged at step"), std::string::npos) << log1;
    EXPECT_FALSE(fs::exists(dir + "/pair/node-00/final.safetensors"));
    return;
  }
  FAIL() << "port taken three times in a row";
}

// Resume verifies checkpoints: a damaged or truncated newest one is passed over, saying so, and the
// run lands where the uninterrupted one does.
TEST(DistFault, DamagedNewestCheckpointFallsBack) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string flags = "--set train.steps=9 --set train.ckpt_every=3";
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/full", flags)).status, 0);
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/part", flags)).status, 0);
  const std::string ckpt = dir + "/part/node-00/ckpt/";
  fs::remove(dir + "/part/node-00/final.safetensors");
  fs::remove(ckpt + "step-000009.safetensors");
  fs::remove(ckpt + "step-000009.optim.safetensors");
  {  // one flipped byte in the newest weights' data
    std::fstream f(ckpt + "step-000006.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-100, std::ios::end);
    char c = 0;
    f.read(&c, 1);
    f.seekp(-100, std::ios::end);
    c = static_cast<char>(c ^ 0x40);
    f.write(&c, 1);
  }
  auto resumed = run_lofi(train_cmd(data, dir + "/part", flags + " --resume"));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("checkpoint of step 6 is unusable: " + ckpt + "step-000006.safetensors: its data hashes to"),
            std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("falling back to the newest checkpoint that verifies, step 3"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("step 4/9"), std::string::npos) << resumed.output;
  EXPECT_EQ(max_abs_diff(dir + "/full/node-00/final.safetensors", dir + "/part/node-00/final.safetensors"), 0.0);
  // A truncated optimizer file of the newest checkpoint: the one before it is used.
  fs::resize_file(ckpt + "step-000009.optim.safetensors", fs::file_size(ckpt + "step-000009.optim.safetensors") / 2);
  fs::remove(dir + "/part/node-00/final.safetensors");
  auto truncated = run_lofi(train_cmd(data, dir + "/part", flags + " --resume"));
  ASSERT_EQ(truncated.status, 0) << truncated.output;
  EXPECT_NE(truncated.output.find("checkpoint of step 9 is unusable"), std::string::npos) << truncated.output;
  EXPECT_EQ(max_abs_diff(dir + "/full/node-00/final.safetensors", dir + "/part/node-00/final.safetensors"), 0.0);
}

// Resuming with a setting that changes the trajectory is refused unless --resume-changed; the
// run's config.toml keeps a line per start, with what changed.
TEST(DistFault, ResumeWithChangedSettingsMustSaySo) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string flags = "--set train.ckpt_every=3";
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/run", flags)).status, 0);
  auto changed = run_lofi(train_cmd(data, dir + "/run", flags + " --resume --set train.lr=0.0006 --set train.log_every=1"));
  EXPECT_NE(changed.status, 0);
  EXPECT_NE(changed.output.find("train.lr = 0.0003 -> 0.0006"), std::string::npos) << changed.output;
  EXPECT_EQ(changed.output.find("train.log_every"), std::string::npos) << changed.output;  // logging is not the trajectory
  EXPECT_NE(changed.output.find("--resume-changed"), std::string::npos) << changed.output;
  auto meant = run_lofi(train_cmd(data, dir + "/run", flags + " --resume-changed --set train.lr=0.0006"));
  ASSERT_EQ(meant.status, 0) << meant.output;
  const std::string config = io::read_text_file(dir + "/run/config.toml");
  EXPECT_NE(config.find("# segment 1: steps 0-6"), std::string::npos) << config;
  EXPECT_NE(config.find("# segment 2: steps 6-6"), std::string::npos) << config;
  EXPECT_NE(config.find("changed train.lr = 0.0003 -> 0.0006"), std::string::npos) << config;
  train::Config in_force;
  train::apply_toml_text(in_force, config, "config.toml");
  EXPECT_EQ(in_force.train.lr, 0.0006);  // the config is the one the run now trains with
}

// A full fine-tune resumed with model.init naming another file (moved, or replaced since): its
// checkpoint records the start it was fine-tuned from, and the final keeps that one's checksum,
// which is how merges tell fine-tunes of different starts apart.
TEST(DistFault, ResumedRunKeepsTheChecksumOfItsStart) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/pre")).status, 0);
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/other", "--set train.seed=7")).status, 0);
  const std::string start = dir + "/pre/node-00/final.safetensors", other = dir + "/other/node-00/final.safetensors";
  const std::string flags = "--set train.ckpt_every=3 --set model.init=";
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/run", flags + start)).status, 0);
  const std::string recorded = io::SafetensorsFile(dir + "/run/node-00/final.safetensors").metadata().at("lofi.init_xxh3");
  EXPECT_EQ(recorded, io::SafetensorsFile(start).checksum());
  EXPECT_EQ(io::SafetensorsFile(dir + "/run/node-00/ckpt/step-000003.safetensors").metadata().at("lofi.init_xxh3"), recorded);
  fs::remove(dir + "/run/node-00/ckpt/step-000006.safetensors");
  auto resumed = run_lofi(train_cmd(data, dir + "/run", flags + other + " --resume"));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(io::SafetensorsFile(dir + "/run/node-00/final.safetensors").metadata().at("lofi.init_xxh3"), recorded);
}

// A checkpoint that records no settings (an older layout) resumes, saying that nothing was checked.
TEST(DistFault, ResumeFromACheckpointWithoutSettingsSaysSo) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string flags = "--set train.ckpt_every=3";
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/run", flags)).status, 0);
  fs::remove(dir + "/run/node-00/ckpt/step-000006.safetensors");
  const std::string ckpt = dir + "/run/node-00/ckpt/step-000003.safetensors";
  {
    io::SafetensorsFile file(ckpt);
    io::Metadata meta = file.metadata();
    meta.erase("lofi.config");
    io::NamedTensors tensors = file.load_all();
    io::save_safetensors(ckpt, tensors, meta, /*checksum=*/true);
  }
  auto resumed = run_lofi(train_cmd(data, dir + "/run", flags + " --resume"));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find(ckpt + " records no settings (an older checkpoint)"), std::string::npos) << resumed.output;
}

// Temporaries of killed writers go at the next start of the run; train.keep_checkpoints keeps the
// newest K.
TEST(DistFault, NoLitter) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), node = dir + "/run/node-00";
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/run", "--set train.ckpt_every=1 --set train.keep_checkpoints=2")).status, 0);
  std::vector<std::string> kept;
  for (const auto& e : fs::directory_iterator(node + "/ckpt")) kept.push_back(e.path().filename().string());
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(kept, (std::vector<std::string>{"step-000005.optim.safetensors", "step-000005.safetensors",
                                            "step-000006.optim.safetensors", "step-000006.safetensors"}));
  // A writer killed mid-write (pid 4194304 is above any Linux pid) left temporaries behind.
  std::ofstream(node + "/final.safetensors.tmp-4194304") << "torn";
  std::ofstream(node + "/ckpt/step-000006.safetensors.tmp-4194304") << "torn";
  fs::create_directories(node + "/final-hf.tmp-4194304");
  auto r = run_lofi(train_cmd(data, dir + "/run", "--overwrite"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("final.safetensors.tmp-4194304, left by a writer that died"), std::string::npos) << r.output;
  for (const auto& e : fs::recursive_directory_iterator(dir + "/run"))
    EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << e.path();
}

// A full disk (a 256 KiB tmpfs, where this test may mount one): the run fails with the file and
// the reason, and leaves no half-written file.
TEST(DistFault, FullDiskFailsCleanly) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000), mnt = dir + "/small";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=256k") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << "): the full-disk case is not exercised";
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  auto r = run_lofi(train_cmd(data, mnt + "/run", "--set model.d_model=64 --set model.d_ff=256"));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(mnt + "/run/node-00/final.safetensors"));
  for (const auto& e : fs::recursive_directory_iterator(mnt))
    EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << e.path();
}

// average, soup and export refuse weights holding NaN or Inf, naming the file and the tensor.
TEST(DistFault, NonFiniteWeightsAreRefusedByMerges) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  ASSERT_EQ(run_lofi(train_cmd(data, dir + "/run")).status, 0);
  const std::string good = dir + "/run/node-00/final.safetensors", bad = dir + "/bad.safetensors";
  io::SafetensorsFile file(good);
  io::NamedTensors tensors = file.load_all();
  tensors[1].second.view(-1)[3] = std::numeric_limits<float>::quiet_NaN();
  io::save_safetensors(bad, tensors, file.metadata());
  auto avg = run_lofi("average " + good + " " + bad + " --out " + dir + "/avg.safetensors");
  EXPECT_NE(avg.status, 0);
  EXPECT_NE(avg.output.find(bad + ": tensor '" + tensors[1].first + "' holds NaN (element 3)"), std::string::npos) << avg.output;
  EXPECT_NE(avg.output.find("--allow-nonfinite"), std::string::npos) << avg.output;
  EXPECT_FALSE(fs::exists(dir + "/avg.safetensors"));
  EXPECT_EQ(run_lofi("average " + good + " " + bad + " --allow-nonfinite --out " + dir + "/avg.safetensors").status, 0);
  auto exported = run_lofi("export --format hf " + bad + " " + dir + "/hf");
  EXPECT_NE(exported.status, 0);
  EXPECT_NE(exported.output.find("holds NaN"), std::string::npos) << exported.output;
  EXPECT_FALSE(fs::exists(dir + "/hf"));
  auto soup = run_lofi("soup " + good + " " + bad + " --data val=" + data);
  EXPECT_NE(soup.status, 0);
  EXPECT_NE(soup.output.find(bad + ": tensor '"), std::string::npos) << soup.output;
}

// A node's final carries its data's checksum: a byte damaged since it was written (on a disk, in a
// copy between machines) is named by the merges, and --min-inputs leaves that final out.
TEST(DistFault, DamagedNodeFinalIsNamedByTheMerge) {
  std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  for (const std::string run : {"/run", "/lora"}) {
    const std::string lora = run == "/lora" ? "--set lora.rank=2 --set lora.alpha=4" : "";
    auto trained = run_lofi("launch --workers 2 -- " + train_cmd(data, dir + run, "--set dist.nodes=2 " + lora));
    ASSERT_EQ(trained.status, 0) << trained.output;
    const std::string damaged = dir + run + "/node-01/final.safetensors";
    {
      std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(-3, std::ios::end);
      const char byte = static_cast<char>(f.get() ^ 0x10);
      f.seekp(-3, std::ios::end);
      f.put(byte);
    }
    auto avg = run_lofi("average " + dir + run + " --out " + dir + run + "/avg.safetensors");
    EXPECT_NE(avg.status, 0) << run;
    EXPECT_NE(avg.output.find(damaged + ": its data hashes to"), std::string::npos) << avg.output;
    EXPECT_NE(avg.output.find("the file is damaged"), std::string::npos) << avg.output;
    EXPECT_FALSE(fs::exists(dir + run + "/avg.safetensors"));
    if (run == "/run") {  // full models: the final left out, the others averaged
      // Read for evaluation, generation or further training, it is named too.
      for (const std::string& command :
           {"eval --model " + damaged + " --data d=" + data + " --max-windows 4",
            "generate --model " + damaged + " --prompt abc --tokenizer bytes --max-new-tokens 2",
            "soup " + dir + run + "/node-00/final.safetensors " + damaged + " --data d=" + data + " --max-windows 4",
            train_cmd(data, dir + "/further", "--set model.init=" + damaged)}) {
        auto r = run_lofi(command);
        EXPECT_NE(r.status, 0) << command;
        EXPECT_NE(r.output.find(damaged + ": its data hashes to"), std::string::npos) << command << "\n" << r.output;
      }
      auto rest = run_lofi("average " + dir + run + " --min-inputs 1 --out " + dir + run + "/avg.safetensors");
      EXPECT_EQ(rest.status, 0) << rest.output;
      EXPECT_NE(rest.output.find(damaged), std::string::npos) << rest.output;
      EXPECT_EQ(max_abs_diff(dir + run + "/avg.safetensors", dir + run + "/node-00/final.safetensors"), 0.0);
    }
  }
}

}  // namespace
}  // namespace lofi
