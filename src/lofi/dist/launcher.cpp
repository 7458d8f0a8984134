#include "lofi/dist/launcher.h"

#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "lofi/dist/check_in.h"
#include "lofi/dist/node_status.h"
#include "lofi/dist/store.h"
#include "lofi/error.h"
#include "lofi/io/safetensors.h"
#include "lofi/run/run_dir.h"

extern char** environ;

namespace lofi::dist {
namespace {

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

struct Worker {
  pid_t pid = -1;
  int out_fd = -1;  // read end of the worker's stdout+stderr
  std::string pending;
  bool running = true;
  int status = 0;
};

std::string self_exe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) fail("launch: cannot find this executable (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

void flush_lines(Worker& w, int rank, bool prefix, bool final) {
  size_t start = 0, nl;
  while ((nl = w.pending.find('\n', start)) != std::string::npos) {
    std::cout << (prefix ? "[rank " + std::to_string(rank) + "] " : "") << w.pending.substr(start, nl - start + 1);
    start = nl + 1;
  }
  w.pending.erase(0, start);
  if (final && !w.pending.empty()) {
    std::cout << (prefix ? "[rank " + std::to_string(rank) + "] " : "") << w.pending << "\n";
    w.pending.clear();
  }
  std::cout.flush();
}

struct NodeFailure {
  int64_t node;
  int rank;             // the worker whose end ended the node
  std::string how;      // "was killed by signal 9", ...
  std::string node_dir;
  int64_t first_rank, size;  // the node's workers
  std::optional<std::chrono::steady_clock::time_point> kill_at;  // SIGKILL for any still there, once
};

// The launcher's last line after nodes failed: which, at which step, and the survivors' merge
// (RUN/merged.safetensors written during this launch, with the nodes its metadata names).
std::string failure_summary(const std::vector<NodeFailure>& failures, std::filesystem::file_time_type began) {
  std::string out = "launch: ";
  std::vector<int64_t> nodes;
  for (const auto& f : failures) {
    const auto s = read_node_status(f.node_dir);
    out += cat(nodes.empty() ? "" : "; ", "node ", f.node, " failed (rank ", f.rank, " ", f.how,
               s ? cat(", last step ", s->step, "/", s->steps) : std::string(), ")");
    nodes.push_back(f.node);
  }
  const std::string merged = run::RunDir(std::filesystem::path(failures.front().node_dir).parent_path().string()).merged();
  std::error_code ec;
  if (std::filesystem::exists(merged, ec) && std::filesystem::last_write_time(merged, ec) >= began) {
    const io::SafetensorsFile file(merged);
    auto it = file.metadata().find("lofi.merged_nodes");
    out += cat("; the surviving nodes", it != file.metadata().end() ? " (" + it->second + ")" : std::string(),
               " are merged in ", merged);
  } else {
    out += "; no merge of the surviving nodes was written (see the messages above)";
  }
  return out;
}

}  // namespace

int launch_workers(const LaunchOptions& opt) {
  if (opt.workers < 1) fail("launch: --workers must be >= 1, found ", opt.workers);
  const std::string program = opt.program.empty() ? self_exe() : opt.program;
  // The launcher hosts the rendezvous store, as torchrun's agent does (TORCHELASTIC_USE_AGENT_STORE):
  // it binds before any worker starts, and outlives every worker, rank 0 included.
  c10::intrusive_ptr<c10d::Store> store = host_store("127.0.0.1", opt.master_port, 3600, "launch --master-port");
  const int port = store_port(store);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = opt.threads > 0 ? opt.threads : std::max(1, cores / opt.workers);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  const int forwarded[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old[3] {};
  for (int i = 0; i < 3; ++i) ::sigaction(forwarded[i], &sa, &old[i]);
  auto restore_signals = [&] {
    for (int i = 0; i < 3; ++i) ::sigaction(forwarded[i], &old[i], nullptr);
  };
  g_signal = 0;
  const pid_t launcher_pid = ::getpid();
  const auto launch_began = std::filesystem::file_time_type::clock::now();
  const double launch_began_s = wall_seconds();  // a status.json older than this is an earlier run's

  // Each child's argv and environment are built here: the store's server thread runs, so a child
  // may only make async-signal-safe calls between fork and exec (no malloc, no setenv).
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const auto& a : opt.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::vector<std::pair<std::string, std::string>> common = {
      {"WORLD_SIZE", std::to_string(opt.workers)}, {"LOCAL_WORLD_SIZE", std::to_string(opt.workers)},
      {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
      {"LOFI_THREADS", std::to_string(threads)}, {"OMP_NUM_THREADS", std::to_string(threads)}};
  std::vector<std::vector<std::string>> environments;
  for (int rank = 0; rank < opt.workers; ++rank) {
    auto vars = common;
    vars.emplace_back("RANK", std::to_string(rank));
    vars.emplace_back("LOCAL_RANK", std::to_string(rank));
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      const std::string entry = *e, name = entry.substr(0, entry.find('='));
      if (std::none_of(vars.begin(), vars.end(), [&](const auto& v) { return v.first == name; })) env.push_back(entry);
    }
    for (const auto& [name, value] : vars) env.push_back(name + "=" + value);
    environments.push_back(std::move(env));
  }
  std::vector<std::vector<char*>> envps;
  for (auto& env : environments) {
    envps.emplace_back();
    for (auto& entry : env) envps.back().push_back(entry.data());
    envps.back().push_back(nullptr);
  }
  const std::string exec_failed = "launch: cannot run " + program + "\n";

  std::vector<Worker> workers(static_cast<size_t>(opt.workers));
  // On a failed start, the workers already running are stopped and reaped before the error.
  auto abort_start = [&](const std::string& what) {
    for (auto& w : workers)
      if (w.pid > 0) ::kill(w.pid, SIGKILL), ::waitpid(w.pid, nullptr, 0), ::close(w.out_fd);
    restore_signals();
    fail("launch: ", what, ": ", std::strerror(errno));
  };
  for (int rank = 0; rank < opt.workers; ++rank) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) abort_start("pipe failed");
    pid_t pid = ::fork();
    if (pid < 0) abort_start("fork failed");
    if (pid == 0) {
      ::setpgid(0, 0);  // own group: a terminal's Ctrl-C reaches the launcher, which forwards it
      // If the launcher dies (even by SIGKILL), its workers go too instead of training on.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher_pid) ::_exit(128 + SIGTERM);
      ::dup2(fds[1], STDOUT_FILENO);
      ::dup2(fds[1], STDERR_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execve(program.c_str(), argv.data(), envps[static_cast<size_t>(rank)].data());
      ssize_t ignored = ::write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
      (void)ignored;
      ::_exit(127);
    }
    ::close(fds[1]);
    workers[static_cast<size_t>(rank)].pid = pid;
    workers[static_cast<size_t>(rank)].out_fd = fds[0];
  }

  int result = 0;
  bool stopping = false;
  int stopped_by = 0;  // the signal the launcher forwarded
  std::optional<std::chrono::steady_clock::time_point> kill_after_signal;
  auto signal_worker = [](Worker& w, int sig) {
    ::kill(w.pid, sig);
    if (sig != SIGKILL) ::kill(w.pid, SIGCONT);  // a stopped worker must run to take the signal
  };
  auto stop_all = [&](int sig) {
    for (auto& w : workers)
      if (w.running) signal_worker(w, sig);
  };
  // Nodes that failed alone, in the order they failed; their workers' later exits are theirs.
  std::vector<NodeFailure> failures;
  auto failed_node = [&](int64_t node) {
    return std::any_of(failures.begin(), failures.end(), [&](const NodeFailure& f) { return f.node == node; });
  };
  std::vector<std::optional<CheckIn>> check_ins(workers.size());
  auto check_in_of = [&](size_t rank) -> const std::optional<CheckIn>& {
    if (!check_ins[rank]) check_ins[rank] = read_check_in(*store, static_cast<int>(rank));
    return check_ins[rank];
  };
  // Ends node NODE's workers alone: SIGTERM now, SIGKILL for any still there after a grace period.
  auto signal_node = [&](const NodeFailure& f, int sig) {
    for (int64_t r = f.first_rank; r < f.first_rank + f.size; ++r)
      if (workers[static_cast<size_t>(r)].running) signal_worker(workers[static_cast<size_t>(r)], sig);
  };
  auto end_node = [&](const CheckIn& c, int rank, const std::string& how) {
    failures.push_back({c.node, rank, how, c.node_dir, c.node * c.node_size, c.node_size,
                        std::chrono::steady_clock::now() + std::chrono::seconds(10)});
    std::cerr << "launch: node " << c.node << " failed: rank " << rank << " " << how
              << "; stopping node " << c.node << "'s workers, the other nodes train on" << std::endl;
    signal_node(failures.back(), SIGTERM);
  };
  auto last_watch = std::chrono::steady_clock::now();
  size_t open_pipes = workers.size();
  while (open_pipes > 0 || std::any_of(workers.begin(), workers.end(), [](const Worker& w) { return w.running; })) {
    if (g_signal) {
      if (!stopping) {
        stopping = true;
        stopped_by = g_signal;
        stop_all(g_signal);
        if (result == 0) result = 128 + g_signal;
        // Workers checkpoint and stop at their next read; one stuck in a collective whose peer
        // already stopped would wait for its timeout: ended after a grace period.
        kill_after_signal = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      } else {
        stop_all(SIGKILL);  // a second signal: stop at once
      }
      g_signal = 0;
    }
    std::vector<pollfd> fds;
    for (auto& w : workers)
      if (w.out_fd >= 0) fds.push_back({w.out_fd, POLLIN, 0});
    if (!fds.empty()) ::poll(fds.data(), fds.size(), 100);
    else ::usleep(20000);
    for (size_t i = 0; i < workers.size(); ++i) {
      Worker& w = workers[i];
      if (w.out_fd < 0) continue;
      for (const auto& p : fds) {
        if (p.fd != w.out_fd || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[8192];
        ssize_t n = ::read(w.out_fd, buf, sizeof(buf));
        if (n > 0) {
          w.pending.append(buf, static_cast<size_t>(n));
          flush_lines(w, static_cast<int>(i), opt.prefix_output, false);
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          flush_lines(w, static_cast<int>(i), opt.prefix_output, true);
          ::close(w.out_fd);
          w.out_fd = -1;
          --open_pipes;
        }
      }
    }
    for (size_t rank = 0; rank < workers.size(); ++rank) {
      Worker& w = workers[rank];
      if (!w.running) continue;
      int status = 0;
      if (::waitpid(w.pid, &status, WNOHANG) != w.pid) continue;
      w.running = false;
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code == 0 || stopping) continue;
      const std::optional<CheckIn>& c = check_in_of(rank);
      if (c && failed_node(c->node)) continue;  // a worker of a node already ended
      const std::string how = WIFEXITED(status) ? cat("exited with status ", code) : cat("was killed by signal ", WTERMSIG(status));
      if (c && c->independent) {
        end_node(*c, static_cast<int>(rank), how);
        continue;
      }
      result = code;
      stopping = true;
      std::cerr << "launch: rank " << rank << " " << how << "; stopping the other workers" << std::endl;
      stop_all(SIGTERM);
    }
    const auto now = std::chrono::steady_clock::now();
    if (kill_after_signal && now > *kill_after_signal) {
      std::cerr << "launch: workers still running 60 s after the signal; ending them" << std::endl;
      stop_all(SIGKILL);
      kill_after_signal.reset();
    }
    for (auto& f : failures)
      if (f.kill_at && now > *f.kill_at) signal_node(f, SIGKILL), f.kill_at.reset();
    // A node of an independent job whose heartbeat stopped (a hung worker) is ended like a dead one.
    if (!stopping && now - last_watch > std::chrono::seconds(1)) {
      last_watch = now;
      for (size_t rank = 0; rank < workers.size(); ++rank) {
        const std::optional<CheckIn>& c = workers[rank].running ? check_in_of(rank) : std::nullopt;
        if (!c || !c->independent || failed_node(c->node) || c->rank != c->node * c->node_size) continue;
        const auto s = read_node_status(c->node_dir);
        if (!s || s->state != "training" || s->updated < launch_began_s || wall_seconds() - s->updated <= c->timeout_s)
          continue;
        end_node(*c, static_cast<int>(rank), cat("sent no heartbeat for ", static_cast<int64_t>(wall_seconds() - s->updated),
                                                 " s (dist.timeout_s = ", c->timeout_s, ")"));
      }
    }
  }
  if (!failures.empty()) {
    if (result == 0) result = 1;
    std::cerr << failure_summary(failures, launch_began) << std::endl;
  }
  // Stopped by a signal: where each node stopped, from its status (its leader writes it).
  if (stopped_by)
    for (size_t rank = 0; rank < workers.size(); ++rank) {
      const std::optional<CheckIn>& c = check_in_of(rank);
      if (!c || c->rank != c->node * c->node_size) continue;
      const auto s = read_node_status(c->node_dir);
      std::cerr << "launch: node " << c->node << ": "
                << (!s ? std::string("no status written")
                       : s->state == "failed" ? s->message
                                              : cat(s->state, " at step ", s->step, " of ", s->steps))
                << std::endl;
    }
  restore_signals();
  return result;
}

}  // namespace lofi::dist
