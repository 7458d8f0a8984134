// The run directory, the one place its layout is spelled:
//   RUN/config.toml              the whole job's config (lofi appends a line per start)
//   RUN/merged.safetensors       a lo-fi job's merge of its node finals; merged-hf/ beside it
//   RUN/averaging-check.json     whether that merge was safe (train/averaging_check.h)
//   RUN/node-KK/                 one per node:
//       status.json              its heartbeat (dist/node_status.h)
//       metrics.jsonl            the log; events.out.tfevents.* beside it (TensorBoard)
//       ckpt/step-NNNNNN.safetensors + step-NNNNNN.optim.safetensors   checkpoints
//       final.safetensors        the node's final weights; final-hf/ beside it
//       config.toml              a dist.node_id job's own config
//       lock                     held (flock) by the node's leader while it trains
// A run directory belongs to one run: a new run into a directory that holds one must say whether
// it continues it (--resume) or replaces it (--overwrite). Nothing is deleted silently.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lofi::run {

// One checkpoint: the weights file (written last, so its existence means the checkpoint is
// complete) and the optimizer state beside it: one file, or (a sharded node's) one per worker,
// OPTIMIZER with "-0000r-of-0000G" before its extension; the weights file says which.
struct Checkpoint {
  int64_t step = 0;
  std::string weights, optimizer;
  // Worker RANK's file of the optimizer state of a node of WORKERS that shards it.
  std::string optimizer_shard(int64_t rank, int64_t workers) const;
};

class NodeDir {
 public:
  explicit NodeDir(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  std::string name() const;  // "node-03"
  std::string final_weights() const { return path_ + "/final.safetensors"; }
  std::string final_hf() const { return path_ + "/final-hf"; }
  std::string config() const { return path_ + "/config.toml"; }
  std::string metrics() const { return path_ + "/metrics.jsonl"; }
  std::string profile_trace() const { return path_ + "/profile/trace.json"; }  // train.profile_steps
  std::string profile_table() const { return path_ + "/profile/table.txt"; }
  std::string status() const { return path_ + "/status.json"; }
  std::string lock() const { return path_ + "/lock"; }
  std::string checkpoint_dir() const { return path_ + "/ckpt"; }
  Checkpoint checkpoint(int64_t step) const;
  // The complete checkpoints, oldest first (not verified).
  std::vector<Checkpoint> checkpoints() const;
  std::optional<Checkpoint> latest_checkpoint() const;

 private:
  std::string path_;
};

class RunDir {
 public:
  explicit RunDir(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  NodeDir node(int64_t k) const;
  std::string config() const { return path_ + "/config.toml"; }
  std::string merged() const { return path_ + "/merged.safetensors"; }
  std::string merged_hf() const { return path_ + "/merged-hf"; }
  std::string averaging_check() const { return path_ + "/averaging-check.json"; }

  // The node-KK subdirectories present, in order.
  std::vector<int64_t> node_ids() const;
  // The run's nodes: those present, and those its config says it has (dist.nodes), in order.
  std::vector<int64_t> expected_node_ids() const;
  // A value of the run's config by dotted key ("dist.nodes"), as text ("" when the config lacks
  // the key): RUN/config.toml, else the first node's own (a dist.node_id job); nullopt when there
  // is no config or the first one found does not parse.
  std::optional<std::string> config_value(const std::string& dotted_key) const;

 private:
  std::string path_;
};

// Whether DIR looks like a run directory: it has node-KK subdirectories.
bool is_run_dir(const std::string& dir);
// K when NAME is "node-K..." (digits only), else nullopt.
std::optional<int64_t> node_id_of(const std::string& name);

// What a start does with what the directory already holds.
enum class StartMode { fresh, resume, overwrite };

// flock on the node directory's lock file, held until destroyed (or the process ends, however it
// ends). A second holder is refused with a line naming the first one's pid and host.
class NodeDirLock {
 public:
  explicit NodeDirLock(const NodeDir& node);
  ~NodeDirLock();
  NodeDirLock(const NodeDirLock&) = delete;
  NodeDirLock& operator=(const NodeDirLock&) = delete;

 private:
  int fd_ = -1;
};

// A node leader's start, under its lock: refuses a fresh start into NODE when it holds a run;
// --overwrite removes that run's files (saying which); --resume moves the previous attempt's final
// (and final-hf) to NODE/retired/; removes temporaries of killed writers.
void prepare_node_dir(const NodeDir& node, StartMode mode);
// --resume from an earlier step than NODE's newest checkpoint (nodes that meet agreed on an older
// one, a damaged newer one, or a start over from step 0): the checkpoints after STEP, of a future
// this attempt trains again, move to NODE/retired/ckpt/ (replacing what an earlier resume put
// there), said in one line; left in ckpt/ they would count among train.keep_checkpoints' newest.
void retire_checkpoints_after(const NodeDir& node, int64_t step);

// The same for RUN's own files (the merge, merged-hf, the averaging check; --resume moves them to
// RUN/retired/), by rank 0 of a whole job of NODES nodes. Node directories past NODES hold a
// previous run's nodes, which `lofi average RUN` would take for this run's: a fresh start is
// refused, --overwrite removes them (each under its lock, so not one in use).
void prepare_run_root(const RunDir& run, StartMode mode, int64_t nodes);

}  // namespace lofi::run
