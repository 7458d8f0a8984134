// `lofi launch` as process supervision: a signal to the launcher reaches every worker, a second
// one kills them, and workers do not outlive a launcher killed outright. The workers are small
// shell scripts that log what reaches them; the launcher runs in a child process of the test.
#include "lofi/dist/launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "test_util.h"

namespace lofi::dist {
namespace {

using Clock = std::chrono::steady_clock;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits up to SECONDS for PRED.
template <typename Pred>
bool eventually(double seconds, Pred pred) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

// Forks a launcher of 2 workers running SCRIPT (sh -c; $RANK is set); returns its pid.
pid_t start_launcher(const std::string& script) {
  pid_t pid = ::fork();
  if (pid == 0) {
    LaunchOptions opt;
    opt.workers = 2;
    opt.program = "/bin/sh";
    opt.args = {"-c", script};
    opt.prefix_output = false;
    int code = 1;
    try {
      code = launch_workers(opt);
    } catch (...) {
    }
    ::_exit(code);
  }
  return pid;
}

int wait_status(pid_t pid, double seconds) {
  int status = 0;
  if (!eventually(seconds, [&] { return ::waitpid(pid, &status, WNOHANG) == pid; })) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Alive and not a zombie (a worker whose launcher died is reparented; its reaper may be slow).
bool alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

bool both_ready(const std::string& dir) {
  return std::filesystem::exists(dir + "/ready-0") && std::filesystem::exists(dir + "/ready-1");
}

TEST(DistLauncher, ForwardsASignalToEveryWorker) {
  const std::string dir = test::scratch_dir();
  pid_t launcher = start_launcher("trap 'echo TERM > " + dir + "/got-$RANK; exit 3' TERM; touch " + dir +
                                  "/ready-$RANK; while :; do sleep 0.05; done");
  ASSERT_TRUE(eventually(20, [&] { return both_ready(dir); }));
  ::kill(launcher, SIGTERM);
  EXPECT_EQ(wait_status(launcher, 20), 128 + SIGTERM);  // the launcher reports the signal it got
  for (const char* rank : {"0", "1"}) EXPECT_EQ(read_file(dir + "/got-" + rank), "TERM\n") << "rank " << rank;
}

TEST(DistLauncher, ASecondSignalKillsWorkersThatIgnoreTheFirst) {
  const std::string dir = test::scratch_dir();
  pid_t launcher = start_launcher("trap 'echo TERM >> " + dir + "/got-$RANK' TERM; touch " + dir +
                                  "/ready-$RANK; while :; do sleep 0.05; done");
  ASSERT_TRUE(eventually(20, [&] { return both_ready(dir); }));
  ::kill(launcher, SIGTERM);
  ASSERT_TRUE(eventually(10, [&] {
    return std::filesystem::exists(dir + "/got-0") && std::filesystem::exists(dir + "/got-1");
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(::waitpid(launcher, nullptr, WNOHANG), 0) << "the launcher returned while its workers still ran";
  const auto t0 = Clock::now();
  ::kill(launcher, SIGTERM);  // the second signal: SIGKILL to every worker
  EXPECT_EQ(wait_status(launcher, 20), 128 + SIGTERM);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
}

TEST(DistLauncher, WorkersDieWithAKilledLauncher) {
  const std::string dir = test::scratch_dir();
  pid_t launcher = start_launcher("echo $$ > " + dir + "/pid-$RANK; trap 'exit 5' TERM; touch " + dir +
                                  "/ready-$RANK; while :; do sleep 0.05; done");
  ASSERT_TRUE(eventually(20, [&] { return both_ready(dir); }));
  std::vector<pid_t> workers;
  for (const char* rank : {"0", "1"}) workers.push_back(std::stoi(read_file(dir + "/pid-" + rank)));
  ::kill(launcher, SIGKILL);
  ::waitpid(launcher, nullptr, 0);
  // PR_SET_PDEATHSIG: each worker gets SIGTERM when the launcher dies, even by SIGKILL.
  for (pid_t w : workers)
    EXPECT_TRUE(eventually(10, [&] { return !alive(w); })) << "worker " << w << " outlived its launcher";
}

}  // namespace
}  // namespace lofi::dist
