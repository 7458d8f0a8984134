#include "lofi/dist/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include "lofi/error.h"

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

}  // namespace

int find_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("launch: cannot open a socket: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    fail("launch: cannot find a free port: ", std::strerror(errno));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int launch_workers(const LaunchOptions& opt) {
  if (opt.workers < 1) fail("launch: --workers must be >= 1, found ", opt.workers);
  const std::string program = opt.program.empty() ? self_exe() : opt.program;
  const int port = opt.master_port > 0 ? opt.master_port : find_free_port();
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
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(opt.workers).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(opt.workers).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("LOFI_THREADS", std::to_string(threads).c_str(), 1);
      ::setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(program.c_str()));
      for (const auto& a : opt.args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(program.c_str(), argv.data());
      std::fprintf(stderr, "launch: cannot run %s: %s\n", program.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    ::close(fds[1]);
    workers[static_cast<size_t>(rank)].pid = pid;
    workers[static_cast<size_t>(rank)].out_fd = fds[0];
  }

  int result = 0;
  bool stopping = false;
  auto stop_all = [&](int sig) {
    for (auto& w : workers)
      if (w.running) ::kill(w.pid, sig);
  };
  size_t open_pipes = workers.size();
  while (open_pipes > 0 || std::any_of(workers.begin(), workers.end(), [](const Worker& w) { return w.running; })) {
    if (g_signal) {
      if (!stopping) {
        stopping = true;
        stop_all(g_signal);
        if (result == 0) result = 128 + g_signal;
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
    for (auto& w : workers) {
      if (!w.running) continue;
      int status = 0;
      if (::waitpid(w.pid, &status, WNOHANG) == w.pid) {
        w.running = false;
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code != 0 && result == 0) {
          result = code;
          std::cerr << "launch: rank " << (&w - workers.data()) << " exited with status " << code
                    << (stopping ? "" : "; stopping the other workers") << std::endl;
          if (!stopping) {
            stopping = true;
            stop_all(SIGTERM);
          }
        }
      }
    }
  }
  restore_signals();
  return result;
}

}  // namespace lofi::dist
