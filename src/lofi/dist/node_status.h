// NODE_DIR/status.json: what a node is doing, written by its leader (node_rank 0) at the start,
// about once a second while it trains (its heartbeat), and when it ends (done, or failed and why).
// Nodes of a lo-fi job never talk after start-up, so this file, on the run directory's shared
// file system, is how the end of the job tells the nodes that finished from those that died:
// a node is failed when it says so, when its worker is gone (same host), or when it has been
// silent for dist.timeout_s.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace lofi::dist {

struct NodeStatus {
  std::string state;    // "training", "done" or "failed"
  int64_t step = 0;     // steps done
  int64_t steps = 0;    // of
  std::string attempt;  // the job start that wrote it (Comm::attempt())
  int64_t pid = 0;      // the node leader's process
  std::string host;
  double updated = 0;   // wall-clock seconds since the epoch
  std::string message;  // why it failed
};

std::optional<NodeStatus> read_node_status(const std::string& node_dir);
void write_node_status(const std::string& node_dir, const NodeStatus& status);

// The node leader's side: status "training" now, beats while training, and the end.
class NodeHeartbeat {
 public:
  NodeHeartbeat(std::string node_dir, std::string attempt, int64_t step, int64_t steps);
  // Writes at most once a second, but at once where NOW (a step the launcher must see, as the end
  // of a shared warm start: CheckIn::apart_from_step).
  void beat(int64_t step, bool now = false);
  void done(int64_t step);
  void failed(const std::string& message);

 private:
  void write(const std::string& state, const std::string& message);
  std::string node_dir_;
  NodeStatus status_;
  double last_write_ = 0;
};

struct NodeVerdict {
  enum State { training, done, failed } state = training;
  std::string why;  // for failed: what happened, with the last step
  int64_t step = 0;
};

// A node of ATTEMPT as STATUS shows it at wall-clock NOW: done or failed as it says; failed when
// its leader's process is gone (on this host) or it has been silent for TIMEOUT_S; a node with no
// status of this attempt is failed once WAITED_S (how long the caller has been waiting) passes
// TIMEOUT_S; else training.
NodeVerdict judge_node(const std::optional<NodeStatus>& status, const std::string& attempt, double now,
                       double timeout_s, double waited_s);

// Wall-clock seconds since the epoch.
double wall_seconds();

}  // namespace lofi::dist
