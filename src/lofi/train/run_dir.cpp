#include "lofi/train/run_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <vector>

#include "lofi/dist/check_in.h"
#include "lofi/error.h"
#include "lofi/io/atomic_file.h"

namespace lofi::train {
namespace fs = std::filesystem;
namespace {

bool process_alive(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

// The files of a previous run in DIR among NAMES (a directory counts when it has entries).
std::vector<std::string> run_files(const std::string& dir, const std::vector<std::string>& names) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& name : names) {
    const fs::path p = fs::path(dir) / name;
    if (fs::is_directory(p, ec) ? !fs::is_empty(p, ec) : fs::exists(p, ec)) found.push_back(name);
  }
  return found;
}

void settle(const std::string& dir, const std::vector<std::string>& names, StartMode mode) {
  const std::vector<std::string> found = run_files(dir, names);
  if (found.empty() || mode == StartMode::resume) return;
  std::string list;
  for (const auto& f : found) list += (list.empty() ? "" : ", ") + f;
  if (mode == StartMode::fresh)
    fail(dir, " already holds a run (", list, "); continue it with --resume, start over with --overwrite ",
         "(deletes those files), or choose another run.dir");
  std::printf("--overwrite: removing the previous run's %s in %s\n", list.c_str(), dir.c_str());
  for (const auto& f : found) {
    std::error_code ec;
    fs::remove_all(fs::path(dir) / f, ec);
    if (ec) fail(dir, "/", f, ": cannot remove: ", ec.message());
  }
}

}  // namespace

std::string node_dir(const std::string& run_dir, int64_t node) {
  char name[32];
  std::snprintf(name, sizeof(name), "node-%02lld", static_cast<long long>(node));
  return run_dir + "/" + name;
}

NodeDirLock::NodeDirLock(const std::string& node_dir) {
  io::make_dirs(node_dir);
  const std::string path = node_dir + "/lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(path, ": cannot open the run lock: ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder = io::read_text_file(path);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK) fail(path, ": cannot lock: ", std::strerror(err));
    fail(node_dir, " is in use by another train (", holder.empty() ? "holder unknown" : holder,
         "); wait for it to end, stop it, or choose another run.dir");
  }
  const std::string me = cat("pid ", ::getpid(), " on ", dist::host_name(), "\n");
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()))
    fail(path, ": cannot write the run lock: ", std::strerror(errno));
}

NodeDirLock::~NodeDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock; the file stays (unlinking would race)
}

void prepare_node_dir(const std::string& node_dir, StartMode mode) {
  remove_litter(node_dir);
  remove_litter(node_dir + "/ckpt");
  std::vector<std::string> names{"final.safetensors", "final-hf", "ckpt", "metrics.jsonl", "status.json"};
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(node_dir, ec))  // TensorBoard's, one per attempt
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) names.push_back(entry.path().filename());
  settle(node_dir, names, mode);
}

void prepare_run_root(const std::string& run_dir, StartMode mode) {
  io::make_dirs(run_dir);
  remove_litter(run_dir);
  settle(run_dir, {"merged.safetensors", "merged-hf", "averaging-check.json"}, mode);
}

void remove_litter(const std::string& dir) {
  static const std::regex temporary(".*\\.tmp-([0-9]+)");
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, temporary)) continue;
    const long pid = std::stol(m[1].str());
    if (pid == ::getpid() || process_alive(pid)) continue;
    std::error_code removed;
    fs::remove_all(entry.path(), removed);
    if (!removed) std::printf("removed %s, left by a writer that died (pid %ld)\n", entry.path().c_str(), pid);
  }
}

}  // namespace lofi::train
