#include "lofi/run/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>
#include <toml++/toml.h>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/process.h"
#include "lofi/io/temporaries.h"

namespace lofi::run {
namespace fs = std::filesystem;
namespace {

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

// --resume: the results of the attempt before (a final, a merge, an averaging check) describe
// weights this attempt will replace. They move to DIR/retired/ (replacing what an older resume put
// there), said in one line, so nothing mixes them with this attempt's: not a merge, not a report,
// not `lofi average RUN`.
void retire(const std::string& dir, const std::vector<std::string>& results) {
  const std::vector<std::string> found = run_files(dir, results);
  if (found.empty()) return;
  const fs::path retired = fs::path(dir) / "retired";
  std::error_code ec;
  fs::create_directories(retired, ec);
  if (ec) fail(retired.string(), ": cannot create: ", ec.message());
  std::string list;
  fs::path older;  // what an earlier resume retired moves one level down, kept: retired/older-K
  for (const auto& f : found) {
    if (fs::exists(retired / f)) {
      if (older.empty()) {
        int k = 1;
        while (fs::exists(retired / ("older-" + std::to_string(k)))) ++k;
        older = retired / ("older-" + std::to_string(k));
        fs::create_directories(older, ec);
        if (ec) fail(older.string(), ": cannot create: ", ec.message());
      }
      fs::rename(retired / f, older / f, ec);
      if (ec) fail((retired / f).string(), ": cannot move it to ", older.string(), ": ", ec.message());
    }
    fs::rename(fs::path(dir) / f, retired / f, ec);
    if (ec) fail(dir, "/", f, ": cannot move it to ", retired.string(), ": ", ec.message());
    list += (list.empty() ? "" : ", ") + f;
  }
  std::printf("--resume: moved the previous attempt's %s to %s (this attempt writes its own)%s\n", list.c_str(), retired.c_str(),
              older.empty() ? "" : cat("; what an earlier resume moved there is now in ", older.string()).c_str());
}

}  // namespace

std::string NodeDir::name() const { return fs::path(path_).filename().string(); }

Checkpoint NodeDir::checkpoint(int64_t step) const {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%06lld", static_cast<long long>(step));
  const std::string base = checkpoint_dir() + "/" + name;
  return {step, base + ".safetensors", base + ".optim.safetensors"};
}

std::string Checkpoint::optimizer_shard(int64_t rank, int64_t workers) const {
  char part[48];
  std::snprintf(part, sizeof(part), "-%05lld-of-%05lld.safetensors", static_cast<long long>(rank), static_cast<long long>(workers));
  const std::string extension = ".safetensors";
  return optimizer.substr(0, optimizer.size() - extension.size()) + part;
}

std::vector<Checkpoint> NodeDir::checkpoints() const {
  std::vector<Checkpoint> found;
  std::error_code ec;
  static const std::regex pattern("step-([0-9]+)\\.safetensors");
  for (const auto& entry : fs::directory_iterator(checkpoint_dir(), ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern)) found.push_back(checkpoint(std::stoll(m[1].str())));
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return found;
}

std::optional<Checkpoint> NodeDir::latest_checkpoint() const {
  auto all = checkpoints();
  if (all.empty()) return std::nullopt;
  return all.back();
}

NodeDir RunDir::node(int64_t k) const {
  char name[32];
  std::snprintf(name, sizeof(name), "node-%02lld", static_cast<long long>(k));
  return NodeDir(path_ + "/" + name);
}

std::optional<int64_t> node_id_of(const std::string& name) {
  if (name.rfind("node-", 0) != 0 || name.size() == 5 || name.size() > 23 ||
      name.find_first_not_of("0123456789", 5) != std::string::npos)
    return std::nullopt;
  return std::stoll(name.substr(5));
}

std::vector<int64_t> RunDir::node_ids() const {
  std::vector<int64_t> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path_, ec))
    if (const auto k = node_id_of(entry.path().filename().string()); k && entry.is_directory(ec)) ids.push_back(*k);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<int64_t> RunDir::expected_node_ids() const {
  std::vector<int64_t> ids = node_ids();
  const std::string nodes = config_value("dist.nodes").value_or("");
  const int64_t n = nodes.empty() || nodes.find_first_not_of("0123456789") != std::string::npos ? 0 : std::stoll(nodes);
  for (int64_t k = 0; k < n; ++k) ids.push_back(k);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

std::optional<std::string> RunDir::config_value(const std::string& dotted_key) const {
  std::vector<std::string> candidates{config()};
  for (int64_t k : node_ids()) candidates.push_back(node(k).config());
  for (const auto& path : candidates) {
    std::error_code ec;
    if (!fs::exists(path, ec)) continue;
    try {
      const toml::table table = toml::parse_file(path);
      const toml::node_view<const toml::node> value = table.at_path(dotted_key);
      if (!value) return "";
      if (const auto* s = value.as_string()) return s->get();
      std::ostringstream text;
      text << value;
      return text.str();
    } catch (const toml::parse_error&) {
      return std::nullopt;  // the first config there is the run's; one that does not parse answers nothing
    }
  }
  return std::nullopt;
}

bool is_run_dir(const std::string& dir) { return !RunDir(dir).node_ids().empty(); }

NodeDirLock::NodeDirLock(const NodeDir& node) {
  const std::string& node_dir = node.path();
  io::make_dirs(node_dir);
  const std::string path = node.lock();
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
  const std::string me = cat("pid ", ::getpid(), " on ", io::host_name(), "\n");
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()))
    fail(path, ": cannot write the run lock: ", std::strerror(errno));
}

NodeDirLock::~NodeDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock; the file stays (unlinking would race)
}

void prepare_node_dir(const NodeDir& node, StartMode mode) {
  const std::string& node_dir = node.path();
  io::remove_dead_temporaries(node_dir);
  io::remove_dead_temporaries(node.checkpoint_dir());
  std::vector<std::string> names;  // the files of a run, by name within the node directory
  for (const auto& path : {node.final_weights(), node.final_hf(), node.checkpoint_dir(), node.metrics(), node.status()})
    names.push_back(fs::path(path).filename().string());
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(node_dir, ec))  // TensorBoard's, one per attempt
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) names.push_back(entry.path().filename());
  settle(node_dir, names, mode);
  if (mode == StartMode::resume)
    retire(node_dir, {fs::path(node.final_weights()).filename().string(), fs::path(node.final_hf()).filename().string()});
}

void retire_checkpoints_after(const NodeDir& node, int64_t step) {
  const fs::path retired = fs::path(node.path()) / "retired" / "ckpt";
  std::vector<std::string> moved;
  std::error_code ec;
  for (const auto& c : node.checkpoints()) {
    if (c.step <= step) continue;
    if (moved.empty()) {
      fs::remove_all(retired, ec);  // an earlier resume's
      fs::create_directories(retired, ec);
      if (ec) fail(retired.string(), ": cannot create: ", ec.message());
    }
    // Its weights file first: what is left of it in ckpt/ is incomplete, never listed.
    const std::string stem = fs::path(c.weights).stem().string();  // "step-000006"
    std::vector<fs::path> files{c.weights};
    for (const auto& e : fs::directory_iterator(node.checkpoint_dir(), ec))
      if (e.path() != fs::path(c.weights) && e.path().filename().string().rfind(stem + ".", 0) == 0) files.push_back(e.path());
    for (const auto& f : files) {
      fs::rename(f, retired / f.filename(), ec);
      if (ec) fail(f.string(), ": cannot move it to ", retired.string(), ": ", ec.message());
    }
    moved.push_back(std::to_string(c.step));
  }
  if (moved.empty()) return;
  std::string list;
  for (const auto& s : moved) list += (list.empty() ? "" : ", ") + s;
  std::printf("--resume: moved %s's checkpoints after step %lld (step %s) to %s: this attempt trains those steps again\n",
              node.name().c_str(), static_cast<long long>(step), list.c_str(), retired.c_str());
}

void prepare_run_root(const RunDir& run, StartMode mode, int64_t nodes) {
  for (int64_t k : run.node_ids()) {
    if (k < nodes || mode == StartMode::resume) continue;
    const NodeDir node = run.node(k);
    std::vector<std::string> names;
    for (const auto& path : {node.final_weights(), node.final_hf(), node.checkpoint_dir(), node.metrics(), node.status()})
      names.push_back(fs::path(path).filename().string());
    if (run_files(node.path(), names).empty()) continue;
    if (mode == StartMode::fresh)
      fail(node.path(), " holds a node of a previous run, and this run has ", nodes, " node", nodes == 1 ? "" : "s",
           " (dist.nodes): `lofi average ", run.path(), "` would take it for one of them; start over with --overwrite ",
           "(removes it), or choose another run.dir");
    { NodeDirLock in_use(node); }  // refused, naming its holder, while a train still writes there
    std::printf("--overwrite: removing %s, a node of the previous run (this run has %lld)\n", node.path().c_str(),
                static_cast<long long>(nodes));
    std::error_code ec;
    fs::remove_all(node.path(), ec);
    if (ec) fail(node.path(), ": cannot remove: ", ec.message());
  }
  io::make_dirs(run.path());
  io::remove_dead_temporaries(run.path());
  std::vector<std::string> names;
  for (const auto& path : {run.merged(), run.merged_hf(), run.averaging_check()}) names.push_back(fs::path(path).filename().string());
  settle(run.path(), names, mode);
  if (mode == StartMode::resume) retire(run.path(), names);
}

}  // namespace lofi::run
