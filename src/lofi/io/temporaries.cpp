#include "lofi/io/temporaries.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "lofi/io/process.h"

namespace lofi::io {
namespace {

// A fixed table, no allocation: the signal handler reads it. A slot is claimed (state 1) while
// its path is copied in and readable (state 2) after.
constexpr int kSlots = 64;
struct Slot {
  std::atomic<int> state{0};  // 0 free, 1 being written, 2 in use
  bool directory = false;
  char path[4096] = {};
};
Slot g_slots[kSlots];

// Unlinks every entry of DIR (the staged directories hold files only), then DIR. Only calls that
// are safe in a signal handler, and the process ends right after.
void remove_flat_directory(const char* dir) {
  const int fd = ::open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    if (DIR* d = ::fdopendir(fd)) {
      while (dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ::unlinkat(fd, e->d_name, 0);
      ::closedir(d);
    } else {
      ::close(fd);
    }
  }
  ::rmdir(dir);
}

std::atomic<int> g_stop_signal{0};

void on_fatal_signal(int sig);

void on_first_signal(int sig) {
  if (g_stop_signal.load() != 0) return on_fatal_signal(sig);
  g_stop_signal.store(sig);
}

void on_fatal_signal(int sig) {
  for (auto& slot : g_slots) {
    if (slot.state.load() != 2) continue;
    if (slot.directory) remove_flat_directory(slot.path);
    else ::unlink(slot.path);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void register_temporary(const std::string& path, bool directory) {
  if (path.size() >= sizeof(Slot::path)) return;  // not removable on a signal; the next writer removes it
  for (auto& slot : g_slots) {
    int free = 0;
    if (!slot.state.compare_exchange_strong(free, 1)) continue;
    std::memcpy(slot.path, path.c_str(), path.size() + 1);
    slot.directory = directory;
    slot.state.store(2);
    return;
  }
}

void unregister_temporary(const std::string& path) {
  for (auto& slot : g_slots) {
    int used = 2;
    if (slot.state.load() == 2 && path == slot.path && slot.state.compare_exchange_strong(used, 1)) {
      slot.path[0] = '\0';
      slot.state.store(0);
      return;
    }
  }
}

void remove_temporaries_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

void stop_gracefully_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_first_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

int stop_requested() { return g_stop_signal.load(); }

void remove_dead_temporaries(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  static const std::string kMark = ".tmp-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir.empty() ? "." : dir, ec)) {
    const std::string file = entry.path().filename().string();
    const size_t mark = file.rfind(kMark);
    if (mark == std::string::npos || mark == 0 || (!name.empty() && file.compare(0, mark, name) != 0)) continue;
    const std::string digits = file.substr(mark + kMark.size());
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    const long pid = std::stol(digits);
    if (pid == ::getpid() || process_alive(pid)) continue;
    std::error_code removed;
    fs::remove_all(entry.path(), removed);
    if (!removed) std::printf("removed %s, left by a writer that died (pid %ld)\n", entry.path().c_str(), pid);
  }
}

void remove_dead_writers_temporaries(const std::string& output) {
  const std::filesystem::path out(output);
  remove_dead_temporaries(out.parent_path().string(), out.filename().string());
}

}  // namespace lofi::io
