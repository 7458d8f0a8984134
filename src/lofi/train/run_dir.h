// The run directory and what it holds: RUN/config.toml, RUN/merged.safetensors (a lo-fi job's
// merge) and RUN/node-KK/ per node: status.json, metrics.jsonl, events.out.tfevents.*
// (TensorBoard), ckpt/, final.safetensors, lock.
// A run directory belongs to one run: each node's leader holds an advisory lock (flock) on its
// node directory while it trains, and a new run into a directory that holds one must say whether
// it continues it (--resume) or replaces it (--overwrite). Nothing is deleted silently.
#pragma once
#include <cstdint>
#include <string>

namespace lofi::train {

std::string node_dir(const std::string& run_dir, int64_t node);

// What a start does with what the directory already holds.
enum class StartMode { fresh, resume, overwrite };

// flock on NODE_DIR/lock, held until destroyed (or the process ends, however it ends). A second
// holder is refused with a line naming the first one's pid and host.
class NodeDirLock {
 public:
  explicit NodeDirLock(const std::string& node_dir);
  ~NodeDirLock();
  NodeDirLock(const NodeDirLock&) = delete;
  NodeDirLock& operator=(const NodeDirLock&) = delete;

 private:
  int fd_ = -1;
};

// A node leader's start, under its lock: refuses a fresh start into NODE_DIR when it holds a run;
// --overwrite removes that run's files (saying which); removes temporaries of killed writers.
void prepare_node_dir(const std::string& node_dir, StartMode mode);
// The same for RUN's own files (the merge), by rank 0 of a whole job.
void prepare_run_root(const std::string& run_dir, StartMode mode);
// Removes DIR/*.tmp-PID (files and staged directories) left by writers that died: PID is not a
// live process here, and not this one.
void remove_litter(const std::string& dir);

}  // namespace lofi::train
