#include "lofi/dist/node_status.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/process.h"
#include "lofi/run/run_dir.h"
#include "lofi/text.h"

namespace lofi::dist {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(NodeStatus, state, step, steps, attempt, pid, host, updated, message)

namespace {

std::string status_path(const std::string& node_dir) { return run::NodeDir(node_dir).status(); }

}  // namespace

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::optional<NodeStatus> read_node_status(const std::string& node_dir) {
  std::error_code ec;
  if (!std::filesystem::exists(status_path(node_dir), ec)) return std::nullopt;
  try {
    return nlohmann::json::parse(io::read_text_file(status_path(node_dir))).get<NodeStatus>();
  } catch (const std::exception&) {
    return std::nullopt;  // written atomically, so only a foreign file gets here: as if absent
  }
}

void write_node_status(const std::string& node_dir, const NodeStatus& s) {
  io::write_file_atomic(status_path(node_dir), nlohmann::json(s).dump() + "\n");
}

NodeHeartbeat::NodeHeartbeat(std::string node_dir, std::string attempt, int64_t step, int64_t steps)
    : node_dir_(std::move(node_dir)) {
  status_.step = step;
  status_.steps = steps;
  status_.attempt = std::move(attempt);
  status_.pid = ::getpid();
  status_.host = io::host_name();
  write("training", "");
}

void NodeHeartbeat::beat(int64_t step, bool now) {
  status_.step = step;
  if (now || wall_seconds() - last_write_ >= 1.0) write("training", "");
}

void NodeHeartbeat::done(int64_t step) {
  status_.step = step;
  write("done", "");
}

void NodeHeartbeat::failed(const std::string& message) {
  try {
    write("failed", message);
  } catch (const std::exception&) {
    // already failing (a full disk, say): the silence marks the node failed instead
  }
}

void NodeHeartbeat::write(const std::string& state, const std::string& message) {
  status_.state = state;
  status_.message = message;
  status_.updated = last_write_ = wall_seconds();
  write_node_status(node_dir_, status_);
}

NodeVerdict judge_node(const std::optional<NodeStatus>& status, const std::string& attempt, double now,
                       double timeout_s, double waited_s) {
  NodeVerdict v;
  if (!status || status->attempt != attempt) {
    if (waited_s > timeout_s) {
      v.state = NodeVerdict::failed;
      v.why = cat("never reported in this job (no status.json of this start after ", format_seconds(waited_s, 0), ")");
    }
    return v;
  }
  v.step = status->step;
  const std::string at = cat(" at step ", status->step, "/", status->steps);
  if (status->state == "done") {
    v.state = NodeVerdict::done;
  } else if (status->state == "failed") {
    v.state = NodeVerdict::failed;
    v.why = cat("failed", at, ": ", status->message);
  } else if (status->host == io::host_name() && !io::process_alive(static_cast<long>(status->pid))) {
    v.state = NodeVerdict::failed;
    v.why = cat("its worker (pid ", status->pid, ") died", at);
  } else if (now - status->updated > timeout_s) {
    v.state = NodeVerdict::failed;
    v.why = cat("silent for ", format_seconds(now - status->updated, 0), " (dist.timeout_s = ", timeout_s, ")", at);
  }
  return v;
}

}  // namespace lofi::dist
