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
#include <functional>
#include <iostream>
#include <iterator>
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
void record_signal(int sig) { g_signal = sig; }

// Signal forwarding, the catching side: SIGINT, SIGTERM and SIGHUP are caught while it lives (the
// workers have process groups of their own, so a terminal's Ctrl-C reaches the launcher alone,
// which hands it on); the previous handlers come back at its end.
class CaughtSignals {
 public:
  CaughtSignals() {
    struct sigaction sa {};
    sa.sa_handler = record_signal;
    for (size_t i = 0; i < std::size(kForwarded); ++i) ::sigaction(kForwarded[i], &sa, &old_[i]);
    g_signal = 0;
  }
  ~CaughtSignals() {
    for (size_t i = 0; i < std::size(kForwarded); ++i) ::sigaction(kForwarded[i], &old_[i], nullptr);
  }
  CaughtSignals(const CaughtSignals&) = delete;
  CaughtSignals& operator=(const CaughtSignals&) = delete;

  // The signal caught since the last call, or 0.
  int take() {
    const int sig = g_signal;
    g_signal = 0;
    return sig;
  }

 private:
  static constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[std::size(kForwarded)] {};
};

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

// Each rank's environment: the launcher's own with torchrun's variables, and the thread counts, set.
std::vector<std::vector<std::string>> worker_environments(int workers, int port, int threads,
                                                          const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::pair<std::string, std::string>> common = {
      {"WORLD_SIZE", std::to_string(workers)}, {"LOCAL_WORLD_SIZE", std::to_string(workers)},
      {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
      {"LOFI_THREADS", std::to_string(threads)}, {"OMP_NUM_THREADS", std::to_string(threads)}};
  common.insert(common.end(), extra.begin(), extra.end());
  std::vector<std::vector<std::string>> environments;
  for (int rank = 0; rank < workers; ++rank) {
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
  return environments;
}

// STRINGS as execve takes them: pointers into STRINGS, then nullptr.
std::vector<char*> null_terminated(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (auto& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// The child's side of the fork, with the pipe FDS: the store's server thread runs, so only
// async-signal-safe calls until exec (no malloc, no setenv).
[[noreturn]] void exec_worker(const int fds[2], pid_t launcher_pid, const std::string& program, char* const argv[],
                              char* const envp[], const std::string& exec_failed) {
  ::setpgid(0, 0);  // own group: a terminal's Ctrl-C reaches the launcher, which forwards it
  // If the launcher dies (even by SIGKILL), its workers go too instead of training on.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != launcher_pid) ::_exit(128 + SIGTERM);
  ::dup2(fds[1], STDOUT_FILENO);
  ::dup2(fds[1], STDERR_FILENO);
  ::close(fds[0]);
  ::close(fds[1]);
  ::execve(program.c_str(), argv, envp);
  ssize_t ignored = ::write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
  (void)ignored;
  ::_exit(127);
}

// Process handling: a worker process per rank, its stdout and stderr on a pipe the launcher
// forwards, and its end.
class WorkerProcesses {
 public:
  // Starts PROGRAM with ARGS once per environment (rank k gets ENVIRONMENTS[k]). On a failed
  // start, the workers already running are stopped and reaped before the error.
  WorkerProcesses(const std::string& program, const std::vector<std::string>& args,
                  std::vector<std::vector<std::string>> environments);
  size_t size() const { return workers_.size(); }
  bool running(size_t rank) const { return workers_[rank].running; }
  // A worker still runs, or still has output to forward.
  bool active() const {
    return open_pipes_ > 0 || std::any_of(workers_.begin(), workers_.end(), [](const Worker& w) { return w.running; });
  }
  void signal(size_t rank, int sig);  // a worker that still runs
  void signal_all(int sig);
  // Forwards the workers' output line by line, waiting up to 100 ms for some; PREFIX: "[rank k] ".
  void forward_output(bool prefix);
  // Calls ON_EXIT(rank, wait status) for each worker that ended since the last call, in rank order.
  void reap(const std::function<void(size_t, int)>& on_exit);

 private:
  [[noreturn]] void abort_start(const std::string& what);
  void read_output(size_t rank, bool prefix);

  std::vector<Worker> workers_;
  size_t open_pipes_;
};

WorkerProcesses::WorkerProcesses(const std::string& program, const std::vector<std::string>& args,
                                 std::vector<std::vector<std::string>> environments)
    : workers_(environments.size()), open_pipes_(environments.size()) {
  // Each child's argv and environment are built before the first fork, for exec_worker.
  std::vector<std::string> argv_strings{program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  const std::vector<char*> argv = null_terminated(argv_strings);
  std::vector<std::vector<char*>> envps;
  for (auto& env : environments) envps.push_back(null_terminated(env));
  const std::string exec_failed = "launch: cannot run " + program + "\n";
  const pid_t launcher_pid = ::getpid();
  for (size_t rank = 0; rank < workers_.size(); ++rank) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) abort_start("pipe failed");
    pid_t pid = ::fork();
    if (pid < 0) abort_start("fork failed");
    if (pid == 0) exec_worker(fds, launcher_pid, program, argv.data(), envps[rank].data(), exec_failed);
    ::close(fds[1]);
    workers_[rank].pid = pid;
    workers_[rank].out_fd = fds[0];
  }
}

void WorkerProcesses::abort_start(const std::string& what) {
  for (auto& w : workers_)
    if (w.pid > 0) ::kill(w.pid, SIGKILL), ::waitpid(w.pid, nullptr, 0), ::close(w.out_fd);
  fail("launch: ", what, ": ", std::strerror(errno));
}

void WorkerProcesses::signal(size_t rank, int sig) {
  const Worker& w = workers_[rank];
  if (!w.running) return;
  ::kill(w.pid, sig);
  if (sig != SIGKILL) ::kill(w.pid, SIGCONT);  // a stopped worker must run to take the signal
}

void WorkerProcesses::signal_all(int sig) {
  for (size_t rank = 0; rank < workers_.size(); ++rank) signal(rank, sig);
}

void WorkerProcesses::forward_output(bool prefix) {
  std::vector<pollfd> fds;
  for (auto& w : workers_)
    if (w.out_fd >= 0) fds.push_back({w.out_fd, POLLIN, 0});
  if (!fds.empty()) ::poll(fds.data(), fds.size(), 100);
  else ::usleep(20000);
  for (size_t rank = 0; rank < workers_.size(); ++rank)
    for (const auto& p : fds)
      if (workers_[rank].out_fd >= 0 && p.fd == workers_[rank].out_fd && (p.revents & (POLLIN | POLLHUP | POLLERR)))
        read_output(rank, prefix);
}

void WorkerProcesses::read_output(size_t rank, bool prefix) {
  Worker& w = workers_[rank];
  char buf[8192];
  ssize_t n = ::read(w.out_fd, buf, sizeof(buf));
  if (n > 0) {
    w.pending.append(buf, static_cast<size_t>(n));
    flush_lines(w, static_cast<int>(rank), prefix, false);
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    flush_lines(w, static_cast<int>(rank), prefix, true);
    ::close(w.out_fd);
    w.out_fd = -1;
    --open_pipes_;
  }
}

void WorkerProcesses::reap(const std::function<void(size_t, int)>& on_exit) {
  for (size_t rank = 0; rank < workers_.size(); ++rank) {
    Worker& w = workers_[rank];
    if (!w.running) continue;
    int status = 0;
    if (::waitpid(w.pid, &status, WNOHANG) != w.pid) continue;
    w.running = false;
    on_exit(rank, status);
  }
}

// Each rank's check-in, read from the store once it is there.
class CheckIns {
 public:
  CheckIns(c10d::Store& store, size_t ranks) : store_(store), check_ins_(ranks) {}
  const std::optional<CheckIn>& of(size_t rank) {
    if (!check_ins_[rank]) check_ins_[rank] = read_check_in(store_, static_cast<int>(rank));
    return check_ins_[rank];
  }

 private:
  c10d::Store& store_;
  std::vector<std::optional<CheckIn>> check_ins_;
};

// The first rank of its node: the one that writes the node's status.
bool leads_node(const CheckIn& c) { return c.rank == c.node * c.node_size; }

// When this launch began: a status or merge older than this is an earlier run's.
struct LaunchStart {
  std::filesystem::file_time_type file_time = std::filesystem::file_time_type::clock::now();
  double wall_s = wall_seconds();
};

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

// Whether C's node trains alone by now (CheckIn::apart_from_step): from the start, or past the
// step its nodes last met, as its leader's status (this attempt's: the leader's pid) says.
bool trains_apart(const CheckIn& c, CheckIns& check_ins) {
  if (c.apart_from_step <= 0) return c.apart_from_step == 0;
  const std::optional<CheckIn>& leader = check_ins.of(static_cast<size_t>(c.node * c.node_size));
  const auto s = read_node_status(c.node_dir);
  return leader && s && s->pid == leader->pid && s->step >= c.apart_from_step;
}

// The node-failure policy of nodes that no longer meet (trains_apart): a node whose worker ended,
// or whose heartbeat stopped, fails alone. Its workers get SIGTERM, then
// SIGKILL after a grace period; the other nodes train on, and their workers' later exits are theirs.
class NodeFailures {
 public:
  NodeFailures(WorkerProcesses& workers, CheckIns& check_ins, const LaunchStart& began)
      : workers_(workers), check_ins_(check_ins), began_(began) {}
  bool any() const { return !failures_.empty(); }
  bool failed(int64_t node) const {
    return std::any_of(failures_.begin(), failures_.end(), [&](const NodeFailure& f) { return f.node == node; });
  }
  // Ends node C.node's workers alone: RANK's end (HOW) failed it.
  void end_node(const CheckIn& c, int rank, const std::string& how) {
    failures_.push_back({c.node, rank, how, c.node_dir, c.node * c.node_size, c.node_size,
                         std::chrono::steady_clock::now() + std::chrono::seconds(10)});
    std::cerr << "launch: node " << c.node << " failed: rank " << rank << " " << how
              << "; stopping node " << c.node << "'s workers, the other nodes train on" << std::endl;
    signal_node(failures_.back(), SIGTERM);
  }
  // SIGKILL for a failed node's workers still there after the grace period.
  void kill_overdue(std::chrono::steady_clock::time_point now) {
    for (auto& f : failures_)
      if (f.kill_at && now > *f.kill_at) signal_node(f, SIGKILL), f.kill_at.reset();
  }
  void watch_heartbeats(std::chrono::steady_clock::time_point now);
  std::string summary() const { return failure_summary(failures_, began_.file_time); }

 private:
  void signal_node(const NodeFailure& f, int sig) {
    for (int64_t r = f.first_rank; r < f.first_rank + f.size; ++r) workers_.signal(static_cast<size_t>(r), sig);
  }

  WorkerProcesses& workers_;
  CheckIns& check_ins_;
  const LaunchStart began_;
  std::vector<NodeFailure> failures_;  // in the order the nodes failed
  std::chrono::steady_clock::time_point last_watch_ = std::chrono::steady_clock::now();
};

// A node training apart whose heartbeat stopped (a hung worker) is ended like a dead one;
// the statuses are read once a second.
void NodeFailures::watch_heartbeats(std::chrono::steady_clock::time_point now) {
  if (now - last_watch_ <= std::chrono::seconds(1)) return;
  last_watch_ = now;
  for (size_t rank = 0; rank < workers_.size(); ++rank) {
    const std::optional<CheckIn>& c = workers_.running(rank) ? check_ins_.of(rank) : std::nullopt;
    if (!c || failed(c->node) || !leads_node(*c) || !trains_apart(*c, check_ins_)) continue;
    const auto s = read_node_status(c->node_dir);
    if (!s || s->state != "training" || s->updated < began_.wall_s || wall_seconds() - s->updated <= c->timeout_s)
      continue;
    end_node(*c, static_cast<int>(rank), cat("sent no heartbeat for ", static_cast<int64_t>(wall_seconds() - s->updated),
                                             " s (dist.timeout_s = ", c->timeout_s, ")"));
  }
}

// Runs the workers to their end: forwards their output and the launcher's signals, and decides
// what a worker's failure stops: its node alone (NodeFailures), or every worker.
class Supervisor {
 public:
  Supervisor(WorkerProcesses& workers, c10d::Store& store, const LaunchStart& began)
      : workers_(workers), check_ins_(store, workers.size()), nodes_(workers, check_ins_, began) {}
  // Returns the launch's exit status.
  int run(CaughtSignals& signals, bool prefix_output);

 private:
  void on_signal(int sig);
  void on_exit(size_t rank, int status);
  void on_tick();
  void report_where_nodes_stopped();

  WorkerProcesses& workers_;
  CheckIns check_ins_;
  NodeFailures nodes_;
  int result_ = 0;
  bool stopping_ = false;
  int stopped_by_ = 0;  // the signal the launcher forwarded
  std::optional<std::chrono::steady_clock::time_point> kill_after_signal_;
};

int Supervisor::run(CaughtSignals& signals, bool prefix_output) {
  while (workers_.active()) {
    if (const int sig = signals.take()) on_signal(sig);
    workers_.forward_output(prefix_output);
    workers_.reap([&](size_t rank, int status) { on_exit(rank, status); });
    on_tick();
  }
  if (nodes_.any()) {
    if (result_ == 0) result_ = 1;
    std::cerr << nodes_.summary() << std::endl;
  }
  if (stopped_by_) report_where_nodes_stopped();
  return result_;
}

void Supervisor::on_signal(int sig) {
  if (stopping_) {
    workers_.signal_all(SIGKILL);  // a second signal: stop at once
    return;
  }
  stopping_ = true;
  stopped_by_ = sig;
  workers_.signal_all(sig);
  if (result_ == 0) result_ = 128 + sig;
  // Workers checkpoint and stop at their next read; one stuck in a collective whose peer
  // already stopped would wait for its timeout: ended after a grace period.
  kill_after_signal_ = std::chrono::steady_clock::now() + std::chrono::seconds(60);
}

void Supervisor::on_exit(size_t rank, int status) {
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (code == 0) return;
  const std::optional<CheckIn>& c = check_ins_.of(rank);
  const std::string how = WIFEXITED(status) ? cat("exited with status ", code) : cat("was killed by signal ", WTERMSIG(status));
  // A node leader that died without a word (SIGKILL, the OOM killer) left its status saying
  // "training": the launcher, which saw it die, says so there.
  if (c && leads_node(*c))
    if (std::optional<NodeStatus> s = read_node_status(c->node_dir); s && s->state == "training" && s->pid == c->pid) {
      s->state = "failed";
      s->message = cat("rank ", rank, " ", how, " (said by lofi launch)");
      s->updated = wall_seconds();
      try {
        write_node_status(c->node_dir, *s);
      } catch (const std::exception&) {
        // the status stays as it was; the launcher's own message says what happened
      }
    }
  if (stopping_) return;
  if (c && nodes_.failed(c->node)) return;  // a worker of a node already ended
  if (c && trains_apart(*c, check_ins_)) {
    nodes_.end_node(*c, static_cast<int>(rank), how);
    return;
  }
  result_ = code;
  stopping_ = true;
  std::cerr << "launch: rank " << rank << " " << how << "; stopping the other workers" << std::endl;
  workers_.signal_all(SIGTERM);
}

// Once a loop: the grace periods that ran out, and the heartbeats.
void Supervisor::on_tick() {
  const auto now = std::chrono::steady_clock::now();
  if (kill_after_signal_ && now > *kill_after_signal_) {
    std::cerr << "launch: workers still running 60 s after the signal; ending them" << std::endl;
    workers_.signal_all(SIGKILL);
    kill_after_signal_.reset();
  }
  nodes_.kill_overdue(now);
  if (!stopping_) nodes_.watch_heartbeats(now);
}

// Stopped by a signal: where each node stopped, from its status (its leader writes it).
void Supervisor::report_where_nodes_stopped() {
  for (size_t rank = 0; rank < workers_.size(); ++rank) {
    const std::optional<CheckIn>& c = check_ins_.of(rank);
    if (!c || !leads_node(*c)) continue;
    const auto s = read_node_status(c->node_dir);
    std::cerr << "launch: node " << c->node << ": "
              << (!s ? std::string("no status written")
                     : s->state == "failed" ? s->message
                                            : cat(s->state, " at step ", s->step, " of ", s->steps))
              << std::endl;
  }
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
  CaughtSignals signals;
  const LaunchStart began;  // before any worker starts
  WorkerProcesses workers(program, opt.args, worker_environments(opt.workers, port, threads, opt.env));
  Supervisor supervisor(workers, *store, began);
  return supervisor.run(signals, opt.prefix_output);
}

}  // namespace lofi::dist
