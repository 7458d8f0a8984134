// Checkpoints for --resume, in the node directory's ckpt/ (run/run_dir.h): step-000500.safetensors
// (weights, with the run's config in its metadata) beside step-000500.optim.safetensors (AdamW
// state, parameter steps in its metadata). The weights file is written last, so a checkpoint whose weights exist is complete;
// each file carries the checksum of its data, so a damaged one is told from a good one.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>
#include "lofi/dist/grad_sync.h"
#include "lofi/model/deferred_weights.h"
#include "lofi/run/run_dir.h"
#include "lofi/train/optimizer.h"
#include "lofi/train/outer_optimizer.h"

namespace lofi::train {

// Throws naming the file when either file of PATHS is unreadable, truncated or damaged.
void verify_checkpoint(const run::Checkpoint& paths);
// A node's checkpoints as the places a --resume may continue from, each verified once.
class ResumeCandidates {
 public:
  ResumeCandidates(run::NodeDir node, bool verbose) : node_(std::move(node)), all_(node_.checkpoints()), verbose_(verbose) {}
  bool empty() const { return all_.empty(); }
  // The newest that verifies at or below step AT_MOST; a damaged newer one is passed over, saying
  // so when VERBOSE. nullopt when there is none there; throws when there are checkpoints but none
  // verifies (AT_MOST unset: the node cannot resume at all).
  std::optional<run::Checkpoint> newest(int64_t at_most = INT64_MAX);

 private:
  run::NodeDir node_;
  std::vector<run::Checkpoint> all_;  // oldest first
  std::vector<int64_t> verified_;
  bool verbose_;
};
// What the checkpoint records of its run (save_checkpoint's RECORDS): KEY "lofi.config", the
// config it was trained with; "lofi.data", its data's fingerprints (data/fingerprint.h);
// "lofi.init_xxh3", its start's checksum. Empty where it records none (an older checkpoint).
std::string checkpoint_record(const run::Checkpoint& paths, const std::string& key);

// What a checkpoint and a node's final hold of MODULE: every weight, or, when some are frozen (a
// LoRA run's base), only those that train (the adapters and saved modules).
io::NamedTensors checkpoint_weights(const torch::nn::Module& module);
// The other way: FILE's tensors into MODULE, every weight or only the trained ones as above.
// Parameters on the meta device (a sharded start's) are left to DEFERRED, which keeps FILE.
void load_checkpoint_weights(torch::nn::Module& module, std::shared_ptr<const io::SafetensorsFile> file,
                             model::DeferredWeights* deferred = nullptr);

// Keeps the newest KEEP checkpoints (0: all) and, where the nodes meet (dist.sync_every, a shared
// warm start), the newest one before step MET, the last at which they all met: every node had
// written that one before the meeting, so nodes that must restart from one step always hold one
// in common, whichever of them died mid-save.
void prune_checkpoints(const run::NodeDir& node, int64_t keep, int64_t met = 0);

// AdamW's whole state as an unsharded node's checkpoint holds it (Optimizer::state()).
struct OptimizerState {
  io::NamedTensors tensors;
  io::Metadata metadata;
};
// A node that shards its optimizer (dist.shard): every worker of it writes its own pieces' state
// (Optimizer::shard_state(), and, on the node leader, OUTER's state) to its file of the checkpoint
// of STEP (run::Checkpoint::optimizer_shard), atomically with its checksum, then the node's
// workers agree through COMM that all of theirs are written: one that is not fails on every
// worker, naming it. Nothing is gathered, so a checkpoint costs no worker more than its shard.
void save_optimizer_shard(const run::NodeDir& node, int64_t step, const Optimizer& optimizer, const OuterOptimizer* outer,
                          dist::Comm& comm);
// Whether a worker's whole weights must be gathered from the node's pieces: the node shards its
// parameters (dist.shard = "full") or their fp32 masters (bf16 weights with a sharded optimizer).
bool gathers_weights(const Optimizer& optimizer, const dist::GradientSync& sync);
// The weights a checkpoint and a node's final hold of a worker's MODULE: checkpoint_weights, with
// the optimizer's fp32 masters in place of bf16 parameters (train.param_dtype). Where the node
// shards its parameters or their masters (gathers_weights), the node's workers write them
// together: they all-gather them bucket by bucket (GradientSync::gather, two buckets in flight)
// and the writing worker writes each bucket's parameters to the file as they arrive, so no worker,
// on the device or the host, ever holds them whole (the file lists the gathered parameters in
// packing order, after the others). Elsewhere the writing worker alone writes them.
struct NodeWeights {
  const torch::nn::Module& module;
  const Optimizer& optimizer;
  dist::GradientSync& sync;
  bool writes;  // this worker writes the file (the node's leader); the others take part in the gathers
  // PATH with METADATA, atomically; CHECKSUM adds the data's XXH3 (io::kDataChecksumKey). Every
  // worker of the node calls it.
  void write(const std::string& path, const io::Metadata& metadata, bool checksum) const;
};

// Every worker of the node calls it; the weights' writer writes the files. RECORDS (what the run
// records of itself: "lofi.config", its resolved config; "lofi.data", its data's fingerprints as
// JSON; "lofi.init_xxh3", its start's checksum) go into the weights file's metadata; OPTIMIZER and OUTER's state (DiLoCo's, when the run has one) into the optimizer file
// beside them; or, where OPTIMIZER_SHARDS > 0, the node's workers have saved theirs
// (save_optimizer_shard) and the weights file, written last, records how many files they are.
void save_checkpoint(const run::NodeDir& node, int64_t step, const NodeWeights& weights,
                     OptimizerState optimizer, const io::Metadata& records, const OuterOptimizer* outer = nullptr,
                     int64_t optimizer_shards = 0);
// The optimizer state's files of the checkpoint PATHS: the one file, or every worker's.
std::vector<std::string> optimizer_files(const run::Checkpoint& paths);
// Loads weights and optimizer state (and OUTER's, when given), whatever dist.shard and worker
// count wrote them: each worker reads its pieces' elements from whichever workers' files hold
// them. Returns the step to continue from.
// A fully sharded start's block parameters are left to DEFERRED, their values from the checkpoint.
int64_t load_checkpoint(const run::Checkpoint& paths, torch::nn::Module& module, Optimizer& optimizer,
                        OuterOptimizer* outer = nullptr, model::DeferredWeights* deferred = nullptr);

}  // namespace lofi::train
